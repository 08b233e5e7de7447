"""The result store: Parquet files for results, SQL for metadata, DuckDB for queries.

``open_store()`` is the one entry point; see ``ResultStore`` for the contract. The
write path of a batch, under the store lock and one SQL transaction: mark the runs
done (only those not done already: the exactly-once filter) while a helper thread
encodes the rows (Arrow, then Parquet) and writes the file (temporary name, fsync,
rename); then add the file to the manifest and commit. A crash anywhere leaves
either nothing or an orphan file that the next open removes.
"""

from __future__ import annotations

import logging
import os
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from storage import _compact as compaction
from storage import _meta as meta
from storage import _query as q
from storage import _repair as consistency
from storage._base import NewRun, ResultStore, RunRecord, RunStatus, StoreError, SweepRecord, SweepStatus
from storage._engine import connect_error, create_store_engine, first_line
from storage._faults import fault_point
from storage._files import (
    BATCH_WRITE_OPTIONS,
    RESULTS_DIR,
    WrittenFile,
    check_sweep_name,
    encode_parquet,
    ensure_writable_dir,
    new_result_path,
    remove_file,
    schema_hash,
    store_lock,
    write_atomic,
)
from storage._location import StoreLocation, resolve_location
from storage._migrate import current_revision, prepare_schema
from storage._models import SWEEP_STATUSES
from storage._rows import PARTITION_COLUMN, RESULTS_SCHEMA_VERSION, EncodedBatch, IncomingBatch, incoming

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("flushsweep.storage")

_DAMAGED_HINT = "run `flushsweep store check --repair` to set it aside and requeue its runs"


def open_store(
    store: str | os.PathLike[str] | None = None, db: str | None = None, *, readonly: bool = False
) -> "ParquetSqlStore":
    """Open (creating, upgrading and repairing as needed) the store at ``store`` with metadata in ``db``.

    Args:
        store: the store directory; default ``$FLUSHSWEEP_STORE`` or ``./flushsweep-data``.
        db: SQLAlchemy URL of the metadata database; default ``$FLUSHSWEEP_DB`` or
            ``sqlite:///<store>/meta.sqlite``. ``postgresql://user@host/db`` for clusters.
        readonly: for queries: no directory creation, no migration, no repair, no writes.

    Returns:
        The store; use it as a context manager or call ``close()``.

    Raises:
        StoreError: one line saying what is wrong and what to do.

    Example:
        >>> with open_store("flushsweep-data") as s:                     # doctest: +SKIP
        ...     s.sql("SELECT vcpus, avg(benefit_real) FROM paired GROUP BY vcpus")
    """
    location = resolve_location(store, db)
    return ParquetSqlStore(location, readonly=readonly)


class ParquetSqlStore(ResultStore):
    """``ResultStore`` over a Parquet directory and a SQLAlchemy database.

    Attributes:
        repairs: what opening repaired (orphan files removed, runs requeued), one line each.
    """

    def __init__(self, location: StoreLocation, *, readonly: bool = False) -> None:
        self._location = location
        self._readonly = readonly
        self.repairs: list[str] = []
        self._known_sweeps: set[str] = set()
        self._pool: futures.ThreadPoolExecutor | None = None
        if readonly:
            self._check_exists()
        else:
            ensure_writable_dir(location.directory)
        self._engine = create_store_engine(location, readonly=readonly)
        try:
            self._open()
        except BaseException:
            self._engine.dispose()
            raise

    # --- properties -----------------------------------------------------------------
    @property
    def store_dir(self) -> Path:
        return self._location.directory

    @property
    def results_dir(self) -> Path:
        """The Parquet dataset (Hive-partitioned by sweep): what pandas, Polars, pyarrow or DuckDB
        open directly. Only files listed in the manifest count; after a crash, the next open
        for writing removes any others."""
        return self._location.directory / RESULTS_DIR

    @property
    def db_url(self) -> str:
        """The metadata database URL (with password): Optuna's RDBStorage can share it."""
        return self._location.db_url

    @property
    def location(self) -> StoreLocation:
        return self._location

    @property
    def readonly(self) -> bool:
        return self._readonly

    def columns(self) -> dict[str, str]:
        """Result columns seen so far, name -> type (bool, int64, float64, string)."""
        return dict(self._catalogue)

    def __repr__(self) -> str:
        mode = "read-only" if self._readonly else "read-write"
        return f"<ParquetSqlStore {self.store_dir} db={self._location.safe_db_url} {mode}>"

    # --- opening --------------------------------------------------------------------
    def _check_exists(self) -> None:
        loc = self._location
        if not loc.directory.is_dir():
            raise StoreError(f"no store at {loc.directory}; run a sweep first or pass --store / FLUSHSWEEP_STORE")
        if loc.is_sqlite and not Path(loc.url.database or "").is_file():
            raise StoreError(
                f"no metadata database at {loc.url.database}; run a sweep first or pass --db / FLUSHSWEEP_DB"
            )

    def _open(self) -> None:
        where = str(self.store_dir)
        if self._readonly:
            with self._tx() as conn:
                if current_revision(conn) is None:
                    raise StoreError(
                        f"database {self._location.safe_db_url} holds no flushsweep store yet; run a sweep first "
                        "or pass the right --db / FLUSHSWEEP_DB"
                    )
                prepare_schema(conn, readonly=True, location=self._location)
                consistency.check_schema_version(conn, where)
                consistency.bind_identity(conn, self._location, write=False)
                self._catalogue = meta.catalogue(conn)
            return
        with store_lock(self.store_dir):
            with self._tx() as conn:
                prepare_schema(conn, readonly=False, location=self._location)
                consistency.check_schema_version(conn, where)
                consistency.bind_identity(conn, self._location, write=True)
                fixed = consistency.repair_manifest(conn, self.store_dir)
                consistency.backfill_schema_hashes(conn, self.store_dir)
                self._catalogue = meta.catalogue(conn)
            consistency.remove_orphans(self.store_dir, fixed.orphans)
        self.repairs = consistency.describe(fixed)
        for note in self.repairs:
            log.warning("store %s: %s", self.store_dir, note)

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """A transaction on a fresh connection; failing to connect is a StoreError."""
        try:
            conn = self._engine.connect()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise connect_error(self._location, exc) from None
        try:
            with conn.begin():
                yield conn
        except DBAPIError as exc:
            raise self._db_error(exc) from None
        finally:
            conn.close()

    def _db_error(self, exc: DBAPIError) -> StoreError:
        detail = first_line(exc.orig or exc)
        if self._location.is_sqlite and isinstance(exc, sa.exc.OperationalError):
            return StoreError(
                f"SQLite database {self._location.url.database} failed: {detail}; check that the file and its "
                "directory are readable and writable (stored results are unchanged)"
            )
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
            return StoreError(
                f"database {self._location.safe_db_url} failed: {detail}; check it is up and retry "
                "(stored results are unchanged)"
            )
        return StoreError(f"database error: {detail}")

    def _writable(self) -> None:
        if self._readonly:
            raise StoreError("this store was opened read-only; open it without readonly=True to write")

    # --- sweeps ---------------------------------------------------------------------
    def begin_sweep(self, name: str, spec_text: str, *, kind: str = "sweep") -> SweepRecord:
        self._writable()
        check_sweep_name(name)
        with self._tx() as conn:
            return meta.begin_sweep(conn, name, spec_text, kind)

    def set_sweep_status(self, name: str, status: SweepStatus) -> None:
        self._writable()
        if status not in SWEEP_STATUSES:
            raise StoreError(f"sweep status {status!r} is not one of {', '.join(SWEEP_STATUSES)}")
        with self._tx() as conn:
            meta.set_sweep_status(conn, name, status)

    def find_sweep(self, name: str) -> SweepRecord | None:
        with self._tx() as conn:
            return meta.find_sweep(conn, name)

    def sweeps(self) -> list[SweepRecord]:
        with self._tx() as conn:
            return meta.sweeps(conn)

    # --- runs -----------------------------------------------------------------------
    def add_runs(self, sweep: str, runs: Sequence[NewRun]) -> int:
        self._writable()
        with self._tx() as conn:
            return meta.add_runs(conn, sweep, runs)

    def runs(self, sweep: str | None = None, status: RunStatus | None = None) -> list[RunRecord]:
        with self._tx() as conn:
            return meta.runs(conn, sweep, status)

    def progress(self, sweep: str) -> dict[str, int]:
        with self._tx() as conn:
            return meta.progress(conn, sweep)

    def mark_running(self, run_ids: Sequence[str]) -> None:
        self._writable()
        with self._tx() as conn:
            meta.mark_running(conn, run_ids)

    def record_failure(self, run_id: str, error: str, *, node: str | None = None, final: bool) -> None:
        self._writable()
        with self._tx() as conn:
            meta.record_failure(conn, run_id, error, node, final)

    def requeue(self, sweep: str, *, include_failed: bool = False) -> int:
        self._writable()
        with self._tx() as conn:
            return meta.requeue(conn, sweep, include_failed)

    # --- the write path -------------------------------------------------------------
    def commit_results(self, sweep: str, rows: "Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch") -> int:
        """Store a batch of result rows as one Parquet file; see the class contract.

        ``rows`` is a sequence of flat dicts or an Arrow table (or record batch) of
        such columns. Rows for runs already done are dropped (exactly once); a batch
        naming a run that was never registered is refused whole.

        Raises:
            StoreError: unknown sweep or run, bad column types, unwritable directory.
        """
        self._writable()
        if len(rows) == 0:
            return 0
        check_sweep_name(sweep)
        batch = incoming(rows)
        rel = new_result_path(sweep)
        with store_lock(self.store_dir):
            try:
                with self._tx() as conn:  # commits on exit; the file goes if anything fails first
                    self._require_sweep(conn, sweep)
                    # The helper thread encodes and writes the file while this one runs the
                    # UPDATE (the connection stays on one thread). Submitted last, so the
                    # helper takes the GIL only once this thread waits on the database.
                    writing = self._helper().submit(self._write_batch, batch, rel, self._catalogue)
                    stored, catalogue = self._commit_batch(conn, sweep, batch, rel, writing)
            except BaseException:
                remove_file(self.store_dir, rel)  # not committed: the file must not stay (if it was written)
                raise
        if catalogue is not None:
            self._catalogue = catalogue
        return stored

    def _commit_batch(
        self, conn: sa.Connection, sweep: str, batch: IncomingBatch, rel: str, writing: "futures.Future[Any]"
    ) -> tuple[int, dict[str, str] | None]:
        """Inside the caller's transaction and store lock: mark the runs done, then list the file
        ``writing`` produces. Returns rows stored and the new catalogue (None: unchanged)."""
        try:
            changed = meta.mark_done(conn, batch.run_ids, batch.nodes, rel)
        finally:
            futures.wait([writing])  # never leave a file being written behind
        encoded, info = writing.result()
        table = encoded.table
        if changed != len(batch.run_ids):  # some already done, or unknown
            table = _exactly_once(conn, table, batch.run_ids, rel)
            remove_file(self.store_dir, rel)
            if table.num_rows == 0:
                return 0, None
            info = write_atomic(self.store_dir, rel, encode_parquet(table, BATCH_WRITE_OPTIONS),
                                table.num_rows, schema_hash(table.schema))
        catalogue = meta.add_columns(conn, encoded.new_columns) if encoded.new_columns else None
        meta.add_file(conn, info, sweep, RESULTS_SCHEMA_VERSION)
        fault_point("commit-after-rename", path=rel, rows=table.num_rows)
        return table.num_rows, catalogue

    def _write_batch(self, batch: IncomingBatch, rel: str, catalogue: Mapping[str, str]) -> tuple[EncodedBatch, WrittenFile]:
        """Encode (rows -> Arrow -> Parquet) and write a batch's file; runs on a helper thread."""
        encoded = batch.encode(catalogue)
        table = encoded.table
        data = encode_parquet(table, BATCH_WRITE_OPTIONS)
        return encoded, write_atomic(self.store_dir, rel, data, table.num_rows, schema_hash(table.schema))

    def _require_sweep(self, conn: sa.Connection, sweep: str) -> None:
        if sweep not in self._known_sweeps:  # sweeps are never deleted: one look per store
            meta.require_sweep(conn, sweep)
            self._known_sweeps.add(sweep)

    def _helper(self) -> futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flushsweep-sql")
        return self._pool

    # --- reading --------------------------------------------------------------------
    def results(self, filter: Mapping[str, Any] | None = None, *, sweep: str | None = None) -> "pa.Table":
        """Result rows, in no particular order; ``filter`` maps column -> value or list of values.

        ``sweep`` selects the runs linked to that sweep, including runs another sweep
        computed; the ``sweep`` column names the sweep that computed each row.
        """
        where: list[str] = []
        params: list[Any] = []
        extra: dict[str, Any] = {}
        for column, value in (filter or {}).items():
            self._check_column(column)
            ident = q._ident(column)
            if value is None:
                where.append(f"{ident} IS NULL")
            elif isinstance(value, (list, tuple, set, frozenset)):
                values = list(value)
                if not values:
                    where.append("false")
                else:
                    where.append(f"{ident} IN ({', '.join('?' * len(values))})")
                    params.extend(values)
            else:
                where.append(f"{ident} = ?")
                params.append(value)
        if sweep is not None:
            with self._tx() as conn:
                if meta.find_sweep(conn, sweep) is None:
                    raise StoreError(f"unknown sweep {sweep!r}; `flushsweep query \"SELECT name FROM sweeps\"` lists them")
                extra["_fs_sweep_ids"] = meta.run_ids_arrow(meta.sweep_run_ids(conn, sweep))
            where.append("run_id IN (SELECT run_id FROM _fs_sweep_ids)")
        query = "SELECT * FROM results" + (f" WHERE {' AND '.join(where)}" if where else "")
        return self._execute(query, {"results"}, params, extra)

    def sql(self, query: str) -> "pa.Table":
        """Read-only SQL (DuckDB) over ``results``, ``paired``, ``sweep_results``, ``runs``,
        ``sweeps``, ``sweep_runs`` and ``files``.

        Raises:
            StoreError: a statement that would write ("query is read-only: COPY statements
                are refused"), a query that does not parse or fails.
        """
        q.check_read_only(query)
        return self._execute(query, q.referenced_views(query), None, {})

    def _execute(self, query: str, views: set[str], params: Sequence[Any] | None, extra: Mapping[str, Any]) -> "pa.Table":
        sources = q.QuerySources(
            store_dir=self.store_dir,
            files=self._dataset_files(),
            catalogue=self._catalogue,
            load_table=self._load_view,
        )
        con = q.connect(sources, views)
        try:
            for name, table in extra.items():
                con.register(name, table)
            try:
                return q.run_query(con, query, params)
            except StoreError as exc:
                if ".parquet" in str(exc):
                    raise StoreError(f"{exc}; a result file may be damaged: {_DAMAGED_HINT}") from None
                raise
        finally:
            con.close()

    def _load_view(self, name: str) -> "pa.Table":
        with self._tx() as conn:
            return meta.load_arrow(conn, name)

    def _dataset_files(self) -> list[tuple[str, str | None]]:
        """(absolute path, schema hash) of the manifest's files, after a cheap size check of each."""
        for attempt in range(3):
            with self._tx() as conn:
                listed = meta.manifest_for_reading(conn)
                self._catalogue = meta.catalogue(conn)
            files, problem = [], None
            for rel, size, signature in listed:
                path = self.store_dir / rel
                try:
                    actual = path.stat().st_size
                except FileNotFoundError:
                    problem = f"result file {rel} is missing; {_DAMAGED_HINT}"
                    break
                if actual != size:
                    problem = f"result file {rel} is damaged ({actual} bytes, manifest says {size}); {_DAMAGED_HINT}"
                    break
                files.append((str(path), signature))
            if problem is None:
                return files
            if "missing" not in problem or attempt == 2:  # a missing file may be a compaction in flight: re-read
                raise StoreError(problem)
        raise AssertionError("unreachable")

    def _check_column(self, column: str) -> None:
        if column in self._catalogue or column == PARTITION_COLUMN:
            return
        import difflib

        known = sorted([*self._catalogue, PARTITION_COLUMN])
        close = difflib.get_close_matches(column, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none yet'}"
        raise StoreError(f"results filter: unknown column {column!r}; {hint}")

    # --- maintenance ----------------------------------------------------------------
    def check(self, *, repair: bool = False) -> list[str]:
        """Verify every file against the manifest (size, checksum, footer) and the runs.

        Args:
            repair: set damaged or missing files aside (``quarantine/``), requeue their
                runs, and delete files no commit finished.

        Returns:
            One line per problem (with what was done, when repairing); empty when healthy.
        """
        if not repair:
            with self._tx() as conn:
                return [p.message for p in consistency.audit(conn, self.store_dir)]
        self._writable()
        with store_lock(self.store_dir):
            with self._tx() as conn:
                problems = consistency.audit(conn, self.store_dir)
                notes, orphans = consistency.fix(conn, self.store_dir, problems)
            consistency.remove_orphans(self.store_dir, orphans)
        return notes

    def compact(self, *, target_rows: int = compaction.DEFAULT_TARGET_ROWS, sweep: str | None = None) -> int:
        """Merge small files into files of up to ``target_rows`` rows; returns files removed.

        Args:
            sweep: only the files this sweep computed (its partition); default all.
        """
        self._writable()
        if target_rows < 2:
            raise StoreError(f"compact target_rows must be >= 2, got {target_rows}")
        removed = 0
        with store_lock(self.store_dir):
            with self._tx() as conn:
                listed = [f for f in meta.manifest(conn) if sweep is None or f["sweep"] == sweep]
                groups = compaction.plan(listed, target_rows)
            for group in groups:
                removed += compaction.merge_group(self.store_dir, group, self._tx)
        return removed

    def file_count(self, sweep: str | None = None) -> int:
        """Result files in the manifest (only ``sweep``'s, if given)."""
        with self._tx() as conn:
            return meta.count_files(conn, sweep)

    def summary(self) -> dict[str, Any]:
        """Where the store is and what it holds, for `flushsweep store info`."""
        with self._tx() as conn:
            files = meta.manifest(conn)
            counts = dict(conn.execute(sa.select(meta.RUNS.c.status, sa.func.count()).group_by(meta.RUNS.c.status)).all())
            return {
                "store": str(self.store_dir),
                "db": self._location.safe_db_url,
                "schema_revision": current_revision(conn),
                "results_schema_version": RESULTS_SCHEMA_VERSION,
                "sweeps": len(meta.sweeps(conn)),
                "runs": counts,
                "files": len(files),
                "rows": sum(f["rows"] for f in files),
                "bytes": sum(f["bytes"] for f in files),
                "columns": len(self._catalogue),
            }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._engine.dispose()


def _exactly_once(conn: sa.Connection, table: "pa.Table", run_ids: list[str], rel: str) -> "pa.Table":
    """The rows whose runs this commit marked done; raises if any run was never registered."""
    mine = meta.done_in(conn, run_ids, rel)
    unknown = meta.unknown_runs(conn, [r for r in run_ids if r not in mine])
    if unknown:
        raise StoreError(
            f"{len(unknown)} result row(s) name runs never registered (e.g. {unknown[0]!r}); "
            "call add_runs before commit_results"
        )
    return _keep(table, mine)


def _keep(table: "pa.Table", run_ids: set[str]) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("run_id"), value_set=pa.array(sorted(run_ids), pa.string())))


__all__ = ["ParquetSqlStore", "open_store"]
