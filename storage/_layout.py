"""Moving a store's result files between layouts: the partitions in the store root (before
revision 0004) and the Parquet dataset in ``<store>/results/`` (since).

Run by migration 0004 inside the transaction that opens the store, under the store
lock (and, on PostgreSQL, the migration advisory lock). Files move first, the
manifest paths (``fs_files.path``, ``fs_runs.result_file``) second, and the revision
is stamped in the same transaction as the paths. Every step can run again:

- a partition is moved by one ``rename`` of its directory (or file by file when the
  target exists), so a crash leaves each file in exactly one of the two places;
- the SQL rewrite only touches paths still in the old form.

A crash before the commit leaves files (some or all) moved and the database at the old
revision, which refuses read-only opens; the next open for writing moves the rest and
commits. Nothing is copied, so nothing is duplicated; nothing is deleted but empty
directories and byte-identical duplicates.
"""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import sqlalchemy as sa

from storage._base import StoreError
from storage._faults import fault_point
from storage._files import RESULTS_DIR, fsync_dir, root_partitions
from storage._location import StoreLocation
from storage._models import FileRow, RunRow
from storage._repair import bind_identity

_FILES = FileRow.__table__
_RUNS = RunRow.__table__
_PREFIX = RESULTS_DIR + "/"


def into_results_dir(conn: sa.Connection, location: StoreLocation | None) -> int:
    """Move every root partition under ``results/`` and prefix the manifest paths; returns files moved.

    Raises:
        StoreError: the directory belongs to another database (nothing is moved), the
            manifest lists old-layout files but no store was given (a bare ``alembic
            upgrade``), or a file exists in both places with different bytes.
    """
    moved = 0
    if location is not None:
        bind_identity(conn, location, write=False)  # never rearrange another database's directory
        moved = _move_partitions(location.directory, location.directory / RESULTS_DIR)
    elif _has_paths(conn, old_layout=True):
        raise StoreError("revision 0004 moves result files: upgrade by opening the store (`flushsweep store check`)")
    for column, table in ((_FILES.c.path, _FILES), (_RUNS.c.result_file, _RUNS)):
        conn.execute(
            sa.update(table).where(column.is_not(None), ~column.startswith(_PREFIX))
            .values({column.key: sa.literal(_PREFIX) + column})
        )
    fault_point("layout-before-commit", moved=moved)
    return moved


def into_store_root(conn: sa.Connection, location: StoreLocation | None) -> int:
    """The downgrade: partitions back to the store root, manifest paths without the prefix."""
    moved = 0
    if location is not None:
        store_dir = location.directory
        moved = _move_partitions(store_dir / RESULTS_DIR, store_dir)
        _remove_if_empty(store_dir / RESULTS_DIR)
    elif _has_paths(conn, old_layout=False):
        raise StoreError("downgrading revision 0004 moves result files: pass the store directory to the migration")
    for column, table in ((_FILES.c.path, _FILES), (_RUNS.c.result_file, _RUNS)):
        conn.execute(
            sa.update(table).where(column.startswith(_PREFIX))
            .values({column.key: sa.func.substr(column, len(_PREFIX) + 1)})
        )
    return moved


def _has_paths(conn: sa.Connection, *, old_layout: bool) -> bool:
    new = _FILES.c.path.startswith(_PREFIX)
    return conn.execute(sa.select(_FILES.c.path).where(~new if old_layout else new).limit(1)).first() is not None


def _move_partitions(source: Path, target: Path) -> int:
    """Rename each ``sweep=*`` directory of ``source`` into ``target``; returns files moved."""
    partitions = root_partitions(source)
    if not partitions:
        return 0
    try:
        target.mkdir(exist_ok=True)
        moved = 0
        for name in partitions:
            src, dst = source / name, target / name
            if not dst.exists():
                moved += sum(1 for _ in os.scandir(src))
                os.rename(src, dst)  # the whole partition at once
            else:
                moved += _merge_partition(src, dst)
            fault_point("layout-after-move", partition=name)
        fsync_dir(target)  # the renames reach the disk before the manifest says so
        fsync_dir(source)
    except OSError as exc:
        raise StoreError(
            f"cannot move result files from {source} to {target}: {exc.strerror or exc}; fix the permissions "
            "and open the store again (files already moved stay where they are)"
        ) from None
    return moved


def _merge_partition(src: Path, dst: Path) -> int:
    """File by file, for a partition that exists in both places; identical duplicates are dropped."""
    moved = 0
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        there = dst / entry.name
        if not there.exists():
            os.rename(entry.path, there)
            moved += 1
        elif filecmp.cmp(entry.path, there, shallow=False):
            os.unlink(entry.path)
        else:
            raise StoreError(
                f"result file {entry.name} is in both {src} and {dst} with different contents; move one of "
                "them out of the store and open it again"
            )
    fsync_dir(dst)
    _remove_if_empty(src)
    return moved


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:  # not empty, or already gone
        pass


__all__ = ["into_results_dir", "into_store_root"]
