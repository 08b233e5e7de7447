"""Initial schema: sweeps, runs, their links, the file manifest, the column catalogue.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 17:29:25.051935

Written out in full (no imports from storage._models): a migration is frozen history.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('fs_columns',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('arrow_type', sa.String(length=16), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_fs_columns'))
    )
    op.create_table('fs_files',
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('sweep', sa.String(length=128), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=False),
    sa.Column('schema_version', sa.Integer(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('path', name=op.f('pk_fs_files'))
    )
    op.create_table('fs_runs',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('config', sa.Text(), nullable=False),
    sa.Column('baseline_run_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('node', sa.String(length=255), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result_file', sa.String(length=512), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name=op.f('ck_fs_runs_status')),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_fs_runs'))
    )
    with op.batch_alter_table('fs_runs', schema=None) as batch_op:
        batch_op.create_index('ix_fs_runs_result_file', ['result_file'], unique=False)
        batch_op.create_index('ix_fs_runs_status', ['status'], unique=False)

    op.create_table('fs_store_info',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_fs_store_info'))
    )
    op.create_table('fs_sweeps',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('spec_hash', sa.String(length=64), nullable=False),
    sa.Column('spec_text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=False),
    sa.Column('code_version', sa.String(length=200), nullable=False),
    sa.Column('package_versions', sa.Text(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.CheckConstraint("status IN ('running', 'interrupted', 'done', 'failed', 'cancelled')", name=op.f('ck_fs_sweeps_status')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_fs_sweeps'))
    )
    op.create_table('fs_sweep_runs',
    sa.Column('sweep', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['fs_runs.run_id'], name=op.f('fk_fs_sweep_runs_run_id_fs_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sweep'], ['fs_sweeps.name'], name=op.f('fk_fs_sweep_runs_sweep_fs_sweeps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sweep', 'run_id', name=op.f('pk_fs_sweep_runs'))
    )
    with op.batch_alter_table('fs_sweep_runs', schema=None) as batch_op:
        batch_op.create_index('ix_fs_sweep_runs_run_id', ['run_id'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('fs_sweep_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_fs_sweep_runs_run_id')

    op.drop_table('fs_sweep_runs')
    op.drop_table('fs_sweeps')
    op.drop_table('fs_store_info')
    with op.batch_alter_table('fs_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_fs_runs_status')
        batch_op.drop_index('ix_fs_runs_result_file')

    op.drop_table('fs_runs')
    op.drop_table('fs_files')
    op.drop_table('fs_columns')
