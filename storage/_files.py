"""Parquet files in the store directory: atomic writes, checksums, scanning, quarantine, the lock.

Layout: the results are a Parquet dataset of their own (Hive partitioning on the sweep
that computed the rows), so any Parquet reader opens ``<store>/results`` as is::

    <store>/results/sweep=<name>/part-<utc>-<uuid>.parquet   results, one file per committed batch
    <store>/results/sweep=<name>/.part-...parquet.tmp        being written; readers skip dot files
    <store>/quarantine/results/...                           damaged files set aside by `store check --repair`
    <store>/flushsweep-store.json                            the store id that ties it to its database
    <store>/.flushsweep.lock                                 held while a file and its SQL commit are in flight
    <store>/meta.sqlite, <store>/reports/                    metadata (default SQLite), published reports

A file is written under its temporary name, fsynced and renamed into place, so a
reader never sees half a file; whether it counts is up to the SQL manifest. Manifest
paths are relative to the store directory (``results/sweep=<name>/part-...``).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from storage._base import StoreError
from storage.locking import exclusive_lock

if TYPE_CHECKING:
    import pyarrow as pa

MARKER_FILE = "flushsweep-store.json"
LOCK_FILE = ".flushsweep.lock"
QUARANTINE_DIR = "quarantine"
#: The Parquet dataset: nothing but partition directories and their files.
RESULTS_DIR = "results"
PARTITION_PREFIX = "sweep="
TMP_SUFFIX = ".tmp"
_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: Batches are written for speed (no dictionary pages, no statistics, one row group);
#: compaction rewrites them for reading (see ``compact_write_options``).
BATCH_WRITE_OPTIONS: dict[str, object] = {"compression": "snappy", "use_dictionary": False, "write_statistics": False}


def compact_write_options(schema: "pa.Schema") -> dict[str, object]:
    """Options for merged files: statistics (row groups skipped by filters), row groups that
    DuckDB scans in parallel, and dictionaries only for repetitive text (config values,
    outcomes), not for run ids, which are all distinct. Snappy: reading is what counts."""
    import pyarrow as pa

    repetitive = [f.name for f in schema if pa.types.is_string(f.type) and not f.name.endswith("run_id")]
    return {"compression": "snappy", "row_group_size": 131_072, "use_dictionary": repetitive or False}


@dataclass(frozen=True, slots=True)
class WrittenFile:
    path: str  # relative to the store directory, '/'-separated
    rows: int
    bytes: int
    checksum: str
    schema_hash: str | None = None


def schema_hash(schema: "pa.Schema") -> str:
    """A signature of a file's columns (names, types, order)."""
    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_sweep_name(name: str) -> str:
    """Sweep names become directory names: letters, digits, '.', '_' and '-' only."""
    if not isinstance(name, str) or not _SWEEP_NAME.fullmatch(name):
        raise StoreError(
            f"sweep name {name!r} must start with a letter or digit and use only letters, digits, '.', '_' "
            "and '-' (at most 128 characters); rename the sweep"
        )
    return name


def new_result_path(sweep: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{RESULTS_DIR}/{PARTITION_PREFIX}{sweep}/part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"


def encode_parquet(table: "pa.Table", options: dict[str, object]) -> "pa.Buffer":
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)  # type: ignore[arg-type]
    return sink.getvalue()


def write_atomic(
    store_dir: Path, rel: str, data: "pa.Buffer | bytes", rows: int, signature: str | None = None
) -> WrittenFile:
    """Write ``data`` to ``store_dir/rel`` via a temporary name, fsync, rename, fsync the directory.

    Raises:
        StoreError: the directory is not writable or the disk is full; nothing is left behind.
    """
    final = store_dir / rel
    tmp = final.with_name("." + final.name + TMP_SUFFIX)
    try:
        _make_dirs(final.parent)
        with open(tmp, "wb") as fh:
            fh.write(memoryview(data))
            fh.flush()
            # The data is synced before the rename, so before the SQL commit that lists the
            # file. A killed process would not need it (the kernel still writes the page
            # cache out), but after a power cut a committed manifest entry could otherwise
            # name a file whose data never reached the disk: it would read as damaged until
            # `store check --repair`. It costs well under a millisecond of I/O wait per batch,
            # during which the batch's SQL update runs (see ParquetSqlStore.commit_results).
            os.fdatasync(fh.fileno())
        # No directory fsync per file: if a power cut loses the rename, the manifest
        # names a missing file and the next open requeues its runs.
        os.replace(tmp, final)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise StoreError(
            f"cannot write result file {final}: {exc.strerror or exc}; free space or fix permissions of "
            f"{store_dir} (stored results are unchanged)"
        ) from None
    return WrittenFile(
        path=rel, rows=rows, bytes=len(memoryview(data)), checksum=hashlib.sha256(data).hexdigest(),
        schema_hash=signature,
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan_result_files(store_dir: Path) -> tuple[set[str], set[str]]:
    """(result files, temporary files) under the partition directories, relative to ``store_dir``."""
    results: set[str] = set()
    temps: set[str] = set()
    dataset = store_dir / RESULTS_DIR
    if not dataset.is_dir():
        return results, temps
    for part in os.scandir(dataset):
        if not (part.is_dir(follow_symlinks=False) and part.name.startswith(PARTITION_PREFIX)):
            continue
        for entry in os.scandir(part.path):
            if not entry.is_file(follow_symlinks=False):
                continue
            rel = f"{RESULTS_DIR}/{part.name}/{entry.name}"
            if entry.name.endswith(TMP_SUFFIX):
                temps.add(rel)
            elif entry.name.endswith(".parquet"):
                results.add(rel)
    return results, temps


def root_partitions(store_dir: Path) -> list[str]:
    """Partition directories in the store root: the layout before revision 0004 (see _layout)."""
    if not store_dir.is_dir():
        return []
    return sorted(
        e.name for e in os.scandir(store_dir) if e.is_dir(follow_symlinks=False) and e.name.startswith(PARTITION_PREFIX)
    )


def holds_results(store_dir: Path) -> bool:
    """Whether the directory holds result files, in either layout."""
    return bool(scan_result_files(store_dir)[0]) or any(
        any(os.scandir(store_dir / name)) for name in root_partitions(store_dir)
    )


def remove_file(store_dir: Path, rel: str) -> None:
    _unlink_quietly(store_dir / rel)


def quarantine(store_dir: Path, rel: str) -> str | None:
    """Move a damaged file under ``quarantine/`` (kept, never deleted); returns its new path."""
    src = store_dir / rel
    if not src.exists():
        return None
    dest = store_dir / QUARANTINE_DIR / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest = dest.with_name(f"{dest.stem}-{uuid.uuid4().hex[:6]}{dest.suffix}")
    shutil.move(str(src), dest)
    return str(dest.relative_to(store_dir))


def ensure_writable_dir(store_dir: Path) -> None:
    """Create the store directory if needed and prove we can write in it.

    Raises:
        StoreError: it cannot be created or written (read-only, immutable, a file in the way).
    """
    probe = store_dir / f".probe-{uuid.uuid4().hex[:8]}"
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EEXIST or (store_dir.exists() and not store_dir.is_dir()):
            reason = "it exists and is not a directory"
        raise StoreError(
            f"store directory {store_dir} is not writable ({reason}); fix its permissions or choose another "
            "--store / FLUSHSWEEP_STORE"
        ) from None


def is_writable(*paths: Path) -> bool:
    """Whether every existing path among ``paths`` can be written. ``access(2)`` answers no
    for a read-only mount or an immutable file even to root, so a caller can choose a
    read-only open before anything (a lock file, a journal, a migration) is attempted."""
    return all(os.access(p, os.W_OK) for p in paths if p.exists())


# --- the store marker: which database this directory belongs to -------------------


@dataclass(frozen=True, slots=True)
class StoreMarker:
    store_id: str
    db: str  # the database URL (password masked), for messages only


def read_marker(store_dir: Path) -> StoreMarker | None:
    path = store_dir / MARKER_FILE
    try:
        data = json.loads(path.read_text())
        return StoreMarker(store_id=str(data["store_id"]), db=str(data.get("db", "?")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"store marker {path} is unreadable ({exc}); restore it from a backup") from None


def write_marker(store_dir: Path, marker: StoreMarker) -> None:
    text = json.dumps({"store_id": marker.store_id, "db": marker.db, "format": "flushsweep-store"}, indent=2)
    write_atomic(store_dir, MARKER_FILE, (text + "\n").encode(), rows=0)


# --- the writer lock ----------------------------------------------------------------


@contextmanager
def store_lock(store_dir: Path) -> Iterator[None]:
    """Exclusive lock held from writing a result file until its SQL commit, and during repair.

    Repair deletes files that are not in the manifest; holding this lock means no
    other process is between its rename and its commit, so such a file is a true orphan.
    The kernel drops the lock when a writer dies, even by SIGKILL.
    """
    with exclusive_lock(store_dir / LOCK_FILE):
        yield


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new directory's parent (so a new
    partition survives a power cut together with the file renamed into it)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


__all__ = [
    "BATCH_WRITE_OPTIONS",
    "compact_write_options",
    "LOCK_FILE",
    "MARKER_FILE",
    "QUARANTINE_DIR",
    "RESULTS_DIR",
    "StoreMarker",
    "WrittenFile",
    "check_sweep_name",
    "fsync_dir",
    "holds_results",
    "is_writable",
    "encode_parquet",
    "ensure_writable_dir",
    "new_result_path",
    "quarantine",
    "read_marker",
    "remove_file",
    "root_partitions",
    "scan_result_files",
    "schema_hash",
    "sha256_file",
    "store_lock",
    "write_atomic",
]
