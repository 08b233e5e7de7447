"""The Parquet dataset moves into its own directory, <store>/results/.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:00:00

`pd.read_parquet(store)` failed because the metadata, the store marker and the
reports sat in the dataset root. Result partitions move from <store>/sweep=<name>/
to <store>/results/sweep=<name>/ (one rename per partition) and the manifest paths
(fs_files.path, fs_runs.result_file) gain the "results/" prefix, in the transaction
that stamps this revision. No table changes shape; the revision is here so that an
older flushsweep, which would write into the store root, refuses a moved store.
storage/_layout.py has the moves and why re-running them after a crash is safe.
"""
from typing import Sequence, Union

from alembic import context, op

from storage import _layout

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    _layout.into_results_dir(op.get_bind(), context.config.attributes.get("store_location"))


def downgrade() -> None:
    _layout.into_store_root(op.get_bind(), context.config.attributes.get("store_location"))
