"""Narrow fs_runs: configs move to fs_run_configs; no index on a column a commit changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:00:00

Committing a batch of results updates a thousand runs (status, result file, node).
With the config (hundreds of bytes of JSON) in the same row and indexes on status
and result_file, every such update rewrote a wide row and three index entries;
that was most of a commit's time, and on PostgreSQL no update could be HOT. Now
fs_runs holds only the mutable state; on PostgreSQL its pages are left 70% free
(fillfactor 30) so those updates stay on their page, and a hash index serves the
run_id look-ups. The dropped indexes only sped up repair and compaction, which
scan the (now narrow) table instead.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_FILLFACTOR = 30


def upgrade() -> None:
    op.create_table('fs_run_configs',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('config', sa.Text(), nullable=False),
    sa.Column('baseline_run_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['fs_runs.run_id'], name=op.f('fk_fs_run_configs_run_id_fs_runs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_fs_run_configs'))
    )
    op.execute(
        "INSERT INTO fs_run_configs (run_id, config, baseline_run_id) "
        "SELECT run_id, config, baseline_run_id FROM fs_runs"
    )
    op.drop_index('ix_fs_runs_status', table_name='fs_runs')
    op.drop_index('ix_fs_runs_result_file', table_name='fs_runs')
    # Plain ALTER ... DROP COLUMN (SQLite >= 3.35 has it): batch mode would drop and
    # recreate fs_runs, and dropping it cascades to fs_sweep_runs.
    op.execute("ALTER TABLE fs_runs DROP COLUMN config")
    op.execute("ALTER TABLE fs_runs DROP COLUMN baseline_run_id")
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE fs_runs SET (fillfactor = {_FILLFACTOR})")
        op.create_index('ix_fs_runs_run_id_hash', 'fs_runs', ['run_id'], unique=False, postgresql_using='hash')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_fs_runs_run_id_hash', table_name='fs_runs')
        op.execute("ALTER TABLE fs_runs RESET (fillfactor)")
    op.add_column('fs_runs', sa.Column('config', sa.Text(), nullable=False, server_default='{}'))
    op.add_column('fs_runs', sa.Column('baseline_run_id', sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE fs_runs SET "
        "config = COALESCE((SELECT c.config FROM fs_run_configs c WHERE c.run_id = fs_runs.run_id), '{}'), "
        "baseline_run_id = (SELECT c.baseline_run_id FROM fs_run_configs c WHERE c.run_id = fs_runs.run_id)"
    )
    op.create_index('ix_fs_runs_result_file', 'fs_runs', ['result_file'], unique=False)
    op.create_index('ix_fs_runs_status', 'fs_runs', ['status'], unique=False)
    op.drop_table('fs_run_configs')
