"""Merging small result files, atomically.

A sweep commits one file per batch, which is right for crash safety and wrong for
reading (a million rows in a thousand files). Compaction merges a partition's small
files into files of up to ``target_rows`` rows: write the merged file (temporary
name, fsync, rename), then in one SQL transaction add it to the manifest, point the
runs at it and drop the old entries, then delete the old files. A crash before the
commit leaves an orphan (removed on next open); after it, leftover old files are
orphans too. Either way the results read the same.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import sqlalchemy as sa

from storage import _meta as meta
from storage._base import StoreError
from storage._faults import fault_point
from storage._files import (
    compact_write_options,
    encode_parquet,
    new_result_path,
    remove_file,
    schema_hash,
    sha256_file,
    write_atomic,
)

DEFAULT_TARGET_ROWS = 500_000


def plan(listed: Sequence[Mapping[str, Any]], target_rows: int) -> list[list[Mapping[str, Any]]]:
    """Groups of two or more small files of one sweep, each group at most ``target_rows`` rows."""
    by_sweep: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in listed:
        if entry["rows"] < target_rows:
            by_sweep[entry["sweep"]].append(entry)
    groups: list[list[Mapping[str, Any]]] = []
    for entries in by_sweep.values():
        current: list[Mapping[str, Any]] = []
        total = 0
        for entry in entries:
            if current and total + entry["rows"] > target_rows:
                groups.append(current)
                current, total = [], 0
            current.append(entry)
            total += entry["rows"]
        groups.append(current)
    return [g for g in groups if len(g) >= 2]


def merge_group(
    directory: Path, group: Sequence[Mapping[str, Any]], begin: Callable[[], Any]
) -> int:
    """Merge one group into a new file and swap it in; returns the number of files removed.

    Args:
        begin: opens a connection with a transaction (``engine.begin``); must commit on exit.

    Raises:
        StoreError: an input file is damaged (run `flushsweep store check --repair` first).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for entry in group:
        path = directory / entry["path"]
        # Verify before merging: a merged file gets a fresh checksum, which would launder damage.
        if not path.exists() or sha256_file(path) != entry["checksum"]:
            raise StoreError(
                f"result file {entry['path']} is damaged or missing; run `flushsweep store check --repair` "
                "before compacting"
            )
        tables.append(pq.ParquetFile(path).read())  # not pq.read_table: no partition column from the path
    try:
        merged = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"cannot merge files of sweep {group[0]['sweep']}: {exc}") from None
    sweep = group[0]["sweep"]
    rel = new_result_path(sweep)
    data = encode_parquet(merged, compact_write_options(merged.schema))
    written = write_atomic(directory, rel, data, merged.num_rows, schema_hash(merged.schema))
    old = [entry["path"] for entry in group]
    try:
        with begin() as conn:
            meta.add_file(conn, written, sweep, max(entry["schema_version"] for entry in group))
            for chunk in meta.chunks(old):
                conn.execute(
                    sa.update(meta.RUNS).where(meta.RUNS.c.result_file.in_(chunk)).values(result_file=rel)
                )
                conn.execute(sa.delete(meta.FILES).where(meta.FILES.c.path.in_(chunk)))
            fault_point("compact-after-rename", path=rel, replaces=old)
    except BaseException:
        remove_file(directory, rel)
        raise
    for path in old:
        remove_file(directory, path)
    return len(old)


__all__ = ["DEFAULT_TARGET_ROWS", "merge_group", "plan"]
