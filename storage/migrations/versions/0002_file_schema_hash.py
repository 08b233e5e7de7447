"""Record each result file's column signature, so queries read same-shaped files together.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 18:10:00

Reading a thousand files with DuckDB's union_by_name opens every footer before a
query can start; files known to share a schema can be read as one group without it.
Files written before this revision have no signature and keep being read by name.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('fs_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schema_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('fs_files', schema=None) as batch_op:
        batch_op.drop_column('schema_hash')
