"""Keeping the Parquet files and the SQL manifest in agreement.

- ``bind_identity``: a store directory and a database are tied by a store id, so a
  wrong ``--store``/``--db`` pair is refused instead of "repairing" (deleting) the
  results of another store.
- ``repair_manifest``: undo a crash between a file's rename and its SQL commit (the
  orphan file is deleted) and requeue runs whose file vanished.
- ``audit`` / ``fix``: the full audit behind `flushsweep store check` (sizes, checksums,
  Parquet footers, run/file agreement), optionally repairing: damaged files are moved
  to ``quarantine/`` (kept, never deleted) and their runs go back to pending.

Whenever runs go back to pending, a sweep marked done that asked for them is marked
interrupted again (``meta.reopen_sweeps``): its status follows its runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from storage import _meta as meta
from storage._base import StoreError
from storage._files import (
    StoreMarker,
    holds_results,
    quarantine,
    read_marker,
    remove_file,
    scan_result_files,
    schema_hash,
    sha256_file,
    write_marker,
)
from storage._location import StoreLocation
from storage._rows import RESULTS_SCHEMA_VERSION


def bind_identity(conn: sa.Connection, location: StoreLocation, *, write: bool) -> str | None:
    """Check (and on first use, record) that this directory and this database belong together.

    Returns:
        The store id (None for a read-only look at a store that has none yet).

    Raises:
        StoreError: the directory belongs to another database, or the other way round.
    """
    directory, db = location.directory, location.safe_db_url
    info = meta.store_info(conn)
    db_id = info.get("store_id")
    marker = read_marker(directory)
    if db_id and marker:
        if db_id != marker.store_id:
            raise StoreError(
                f"store directory {directory} belongs to database {marker.db}, not {db}; "
                "pass the matching --store and --db"
            )
        store_id = db_id
    elif db_id:
        if meta.manifest_paths(conn) and info.get("store_dir") != str(directory):
            where = info.get("store_dir", "another directory")
            raise StoreError(
                f"database {db} holds the results of store directory {where}, not {directory}; pass --store {where}"
            )
        store_id = db_id
    elif marker:
        if holds_results(directory):
            raise StoreError(
                f"store directory {directory} holds results recorded in database {marker.db}, not {db}; "
                f"pass --db {marker.db}"
            )
        store_id = marker.store_id
    else:
        if holds_results(directory):
            raise StoreError(
                f"store directory {directory} holds result files but no store marker; pass the --db it was "
                "written with, or move the files away"
            )
        store_id = uuid.uuid4().hex if write else None
    if write and store_id is not None:
        if db_id != store_id:
            meta.set_store_info(conn, "store_id", store_id)
        if info.get("store_dir") != str(directory):
            meta.set_store_info(conn, "store_dir", str(directory))
        if marker is None or marker.store_id != store_id:
            write_marker(directory, StoreMarker(store_id=store_id, db=db))
    return store_id


def check_schema_version(conn: sa.Connection, where: str) -> None:
    newest = meta.newest_schema_version(conn)
    if newest > RESULTS_SCHEMA_VERSION:
        raise StoreError(
            f"store {where} holds result files of schema version {newest}, this flushsweep reads up to "
            f"{RESULTS_SCHEMA_VERSION}; upgrade flushsweep to open it, nothing was changed"
        )


@dataclass(frozen=True, slots=True)
class OpenRepair:
    """What opening found: manifest entries whose file is gone, files to delete, sweeps reopened."""

    missing: list[str]
    runs_requeued: int
    orphans: list[str]
    reopened: list[str]


def repair_manifest(conn: sa.Connection, directory: Path) -> OpenRepair:
    """Inside the caller's transaction (and store lock): drop vanished files from the manifest.

    Orphans are only listed here; delete them with ``remove_orphans`` after the commit.
    """
    listed = meta.manifest_paths(conn)
    on_disk, temps = scan_result_files(directory)
    missing = sorted(set(listed) - on_disk)
    requeued = meta.drop_files(conn, missing) if missing else 0
    orphans = sorted((on_disk - set(listed)) | temps)
    reopened = meta.reopen_sweeps(conn) if requeued else []
    return OpenRepair(missing=missing, runs_requeued=requeued, orphans=orphans, reopened=reopened)


def backfill_schema_hashes(conn: sa.Connection, directory: Path) -> int:
    """Give files written before revision 0002 their schema signature (read from the footer),
    so queries can group them; returns how many were filled in."""
    import pyarrow.parquet as pq

    query = sa.select(meta.FILES.c.path).where(meta.FILES.c.schema_hash.is_(None))
    filled = 0
    for rel in conn.execute(query).scalars().all():
        try:
            schema = pq.ParquetFile(directory / rel).schema_arrow
        except (OSError, ValueError):  # missing or damaged: `store check` reports it
            continue
        conn.execute(
            sa.update(meta.FILES).where(meta.FILES.c.path == rel).values(schema_hash=schema_hash(schema))
        )
        filled += 1
    return filled


def remove_orphans(directory: Path, orphans: list[str]) -> None:
    for rel in orphans:
        remove_file(directory, rel)


def describe(repair: OpenRepair) -> list[str]:
    notes = [f"removed {rel}: written by a commit that never finished" for rel in repair.orphans]
    if repair.missing:
        notes.append(
            f"{len(repair.missing)} result file(s) missing (e.g. {repair.missing[0]}): "
            f"{repair.runs_requeued} run(s) back to pending"
        )
    notes += [_reopened(name) for name in repair.reopened]
    return notes


def _reopened(sweep: str) -> str:
    return f"sweep {sweep} is no longer done: status back to interrupted; `flushsweep resume {sweep}` recomputes its runs"


# --- the full audit --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    damaged_file: str | None = None  # set aside and requeue its runs
    orphan_file: str | None = None  # not in the manifest: delete
    stray_runs: str | None = None  # "done" runs without a listed file: requeue (file path or "")


def audit(conn: sa.Connection, directory: Path) -> list[Problem]:
    """Every disagreement between the files, the manifest and the runs."""
    import pyarrow.parquet as pq

    problems: list[Problem] = []
    listed = meta.manifest(conn)
    on_disk, temps = scan_result_files(directory)
    for entry in listed:
        rel = entry["path"]
        path = directory / rel
        if rel not in on_disk:
            problems.append(Problem(f"result file {rel} is missing", damaged_file=rel))
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            problems.append(Problem(f"result file {rel} is damaged: {size} bytes, manifest says {entry['bytes']}",
                                    damaged_file=rel))
            continue
        if sha256_file(path) != entry["checksum"]:
            problems.append(Problem(f"result file {rel} is damaged: checksum mismatch", damaged_file=rel))
            continue
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - any unreadable footer is damage
            problems.append(Problem(f"result file {rel} is unreadable: {exc}", damaged_file=rel))
            continue
        if rows != entry["rows"]:
            problems.append(Problem(f"result file {rel} has {rows} rows, manifest says {entry['rows']}",
                                    damaged_file=rel))
    names = {e["path"] for e in listed}
    for rel in sorted((on_disk - names) | temps):
        problems.append(Problem(f"file {rel} is not in the manifest (an interrupted commit)", orphan_file=rel))
    counts = conn.execute(
        sa.select(meta.RUNS.c.result_file, sa.func.count())
        .where(meta.RUNS.c.status == "done")
        .group_by(meta.RUNS.c.result_file)
    ).all()
    rows_by_path = {e["path"]: e["rows"] for e in listed}
    for rel, n in counts:
        if rel is None or rel not in rows_by_path:
            what = "no result file" if rel is None else f"result file {rel}, which is not in the manifest"
            problems.append(Problem(f"{n} done run(s) point to {what}", stray_runs=rel or ""))
        elif n != rows_by_path[rel]:
            problems.append(Problem(f"result file {rel} holds {rows_by_path[rel]} rows but {n} done run(s) point to it"))
    return problems


def fix(conn: sa.Connection, directory: Path, problems: list[Problem]) -> tuple[list[str], list[str]]:
    """Repair what can be repaired inside the caller's transaction.

    Returns:
        (notes on what was done, orphan files to delete after the commit).
    """
    notes: list[str] = []
    orphans: list[str] = []
    requeued = 0
    for p in problems:
        if p.damaged_file is not None:
            moved = quarantine(directory, p.damaged_file)
            n = meta.drop_files(conn, [p.damaged_file])
            requeued += n
            where = f"moved to {moved}, " if moved else ""
            notes.append(f"{p.message}: {where}{n} run(s) back to pending")
        elif p.orphan_file is not None:
            orphans.append(p.orphan_file)
            notes.append(f"{p.message}: removed")
        elif p.stray_runs is not None:
            cond = meta.RUNS.c.result_file.is_(None) if p.stray_runs == "" else meta.RUNS.c.result_file == p.stray_runs
            n = conn.execute(
                sa.update(meta.RUNS).where(cond, meta.RUNS.c.status == "done").values(status="pending", result_file=None)
            ).rowcount
            requeued += n
            notes.append(f"{p.message}: {n} run(s) back to pending")
        else:
            notes.append(f"{p.message}: not repaired automatically; inspect it")
    if requeued:
        notes += [_reopened(name) for name in meta.reopen_sweeps(conn)]
    return notes, orphans


__all__ = [
    "OpenRepair",
    "Problem",
    "audit",
    "backfill_schema_hashes",
    "bind_identity",
    "check_schema_version",
    "describe",
    "fix",
    "remove_orphans",
    "repair_manifest",
]
