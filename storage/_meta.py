"""SQL metadata operations on an open connection: sweeps, runs, links, manifest, catalogue.

Plain functions over a ``Connection`` already inside a transaction, written with
SQLAlchemy Core on the mapped tables (bulk statements, no ORM unit of work: a sweep
registers a million runs). They return frozen records, never ORM rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import sqlalchemy as sa

from storage._base import NewRun, RunRecord, StoreError, SweepRecord
from storage._files import WrittenFile
from storage._models import (
    RUN_STATUSES,
    ColumnRow,
    FileRow,
    RunConfigRow,
    RunRow,
    StoreInfoRow,
    SweepRow,
    SweepRunRow,
    UTCDateTime,
)
from storage._provenance import code_version, host_name, package_versions

if TYPE_CHECKING:
    import pyarrow as pa

SWEEPS = SweepRow.__table__
RUNS = RunRow.__table__
CONFIGS = RunConfigRow.__table__
LINKS = SweepRunRow.__table__
FILES = FileRow.__table__
COLUMNS = ColumnRow.__table__
INFO = StoreInfoRow.__table__

#: Ids per IN (...) list: well under SQLite's 32766 bound variables.
CHUNK = 5000
MAX_ERROR_CHARS = 20_000
T = TypeVar("T")


def in_ids(conn: sa.Connection, column: sa.ColumnElement[str], ids: Sequence[str]) -> sa.ColumnElement[bool]:
    """``column IN ids`` with the ids as one JSON array, expanded by the database (``json_each``
    on SQLite, ``json_array_elements_text`` on PostgreSQL): no per-id placeholders to render,
    and no per-element adaptation in the driver (a PostgreSQL array parameter of a thousand
    ids costs more to send than the statement takes to run)."""
    document = sa.bindparam(None, json.dumps(list(ids)), type_=sa.Text)
    if conn.dialect.name == "postgresql":
        values = sa.func.json_array_elements_text(sa.cast(document, sa.JSON)).table_valued("value")
        return column.in_(sa.select(values.c.value))
    if conn.dialect.name == "sqlite":
        values = sa.func.json_each(document).table_valued("value")
        return column.in_(sa.select(values.c.value))
    return column.in_(list(ids))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- sweeps -----------------------------------------------------------------------


def begin_sweep(conn: sa.Connection, name: str, spec_text: str, kind: str) -> SweepRecord:
    now = utcnow()
    row = conn.execute(sa.select(SWEEPS).where(SWEEPS.c.name == name)).mappings().first()
    if row is not None:
        conn.execute(sa.update(SWEEPS).where(SWEEPS.c.name == name).values(status="running", updated=now))
        return _sweep_record({**row, "status": "running"})
    values = {
        "name": name,
        "kind": kind,
        "spec_hash": hashlib.sha256(spec_text.encode()).hexdigest(),
        "spec_text": spec_text,
        "status": "running",
        "created": now,
        "updated": now,
        "code_version": code_version(),
        "package_versions": json.dumps(package_versions(), sort_keys=True),
        "host": host_name(),
    }
    conn.execute(sa.insert(SWEEPS).values(values))
    return _sweep_record(values)


def set_sweep_status(conn: sa.Connection, name: str, status: str) -> None:
    result = conn.execute(sa.update(SWEEPS).where(SWEEPS.c.name == name).values(status=status, updated=utcnow()))
    if result.rowcount == 0:
        raise StoreError(f"unknown sweep {name!r}; start it with begin_sweep first")


def find_sweep(conn: sa.Connection, name: str) -> SweepRecord | None:
    row = conn.execute(sa.select(SWEEPS).where(SWEEPS.c.name == name)).mappings().first()
    return None if row is None else _sweep_record(row)


def require_sweep(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.select(SWEEPS.c.name).where(SWEEPS.c.name == name)).first() is None:
        raise StoreError(f"unknown sweep {name!r}; start it with begin_sweep first")


def sweeps(conn: sa.Connection) -> list[SweepRecord]:
    rows = conn.execute(sa.select(SWEEPS).order_by(SWEEPS.c.created, SWEEPS.c.name)).mappings()
    return [_sweep_record(r) for r in rows]


def _sweep_record(row: Mapping[str, Any]) -> SweepRecord:
    return SweepRecord(
        name=row["name"],
        kind=row["kind"],
        spec_hash=row["spec_hash"],
        spec_text=row["spec_text"],
        status=row["status"],
        created=row["created"],
        code_version=row["code_version"],
        host=row["host"],
        package_versions=json.loads(row["package_versions"]),
    )


# --- runs -------------------------------------------------------------------------


def add_runs(conn: sa.Connection, sweep: str, runs: Sequence[NewRun]) -> int:
    """Insert unknown runs and link all of them to ``sweep``; returns how many were new."""
    require_sweep(conn, sweep)
    first: dict[str, NewRun] = {}
    for run in runs:
        first.setdefault(run.run_id, run)
    unique = list(first.values())
    pending = {"status": "pending", "attempts": 0, "created": utcnow()}
    added = 0
    for chunk in chunks(unique):
        ids = [r.run_id for r in chunk]
        known = set(conn.execute(sa.select(RUNS.c.run_id).where(in_ids(conn, RUNS.c.run_id, ids))).scalars())
        fresh = [r for r in chunk if r.run_id not in known]
        if fresh:
            configs = [{"run_id": r.run_id, "config": _config_json(r), "baseline_run_id": r.baseline_run_id} for r in fresh]
            _insert_many(conn, RUNS, [{"run_id": r.run_id} for r in fresh], pending)
            _insert_many(conn, CONFIGS, configs, {})
            added += len(fresh)
        linked = set(
            conn.execute(
                sa.select(LINKS.c.run_id).where(LINKS.c.sweep == sweep, in_ids(conn, LINKS.c.run_id, ids))
            ).scalars()
        )
        links = [{"run_id": i} for i in ids if i not in linked]
        if links:
            _insert_many(conn, LINKS, links, {"sweep": sweep})
    return added


def _insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], same: dict[str, Any]) -> None:
    """Bulk insert ``rows`` (JSON-able values), each completed by the values in ``same``.

    One ``INSERT ... SELECT`` from a JSON document (``json_to_recordset`` on PostgreSQL,
    ``json_each`` on SQLite), parsed in C on both sides: psycopg's executemany sends a
    statement per row, and SQLAlchemy's executemany builds parameters per row in Python.
    """
    names = list(rows[0])
    if conn.dialect.name == "postgresql":
        shape = ", ".join(f"{n} {table.c[n].type.compile(conn.dialect)}" for n in names)
        text = f"SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS x({shape})"
    elif conn.dialect.name == "sqlite":
        text = "SELECT " + ", ".join(f"json_extract(value, '$.{n}') AS {n}" for n in names) + " FROM json_each(:rows)"
    else:
        conn.execute(sa.insert(table), [{**row, **same} for row in rows])
        return
    source = sa.text(text).columns(*[table.c[n] for n in names]).subquery("x")
    consts = [sa.bindparam(f"c_{n}", v, type_=table.c[n].type).label(n) for n, v in same.items()]
    query = sa.select(*[source.c[n] for n in names], *consts)
    conn.execute(sa.insert(table).from_select([*names, *same], query), {"rows": json.dumps(rows)})


def _config_json(run: NewRun) -> str:
    if not isinstance(run.run_id, str) or not run.run_id or len(run.run_id) > 64:
        raise StoreError(f"run_id {run.run_id!r} must be a non-empty string of at most 64 characters (a content hash)")
    try:
        return json.dumps(dict(run.config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"config of run {run.run_id} is not plain JSON ({exc}); pass flat scalars") from None


def runs(conn: sa.Connection, sweep: str | None, status: str | None) -> list[RunRecord]:
    query = sa.select(RUNS, CONFIGS.c.config, CONFIGS.c.baseline_run_id).join(
        CONFIGS, CONFIGS.c.run_id == RUNS.c.run_id
    )
    if sweep is not None:
        query = query.join(LINKS, LINKS.c.run_id == RUNS.c.run_id).where(LINKS.c.sweep == sweep)
    if status is not None:
        _check_status(status)
        query = query.where(RUNS.c.status == status)
    return [_run_record(r) for r in conn.execute(query.order_by(RUNS.c.run_id)).mappings()]


def _run_record(row: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        status=row["status"],
        attempts=row["attempts"],
        config=json.loads(row["config"]),
        baseline_run_id=row["baseline_run_id"],
        error=row["error"],
        node=row["node"],
        started=row["started"],
        finished=row["finished"],
        result_file=row["result_file"],
    )


def progress(conn: sa.Connection, sweep: str) -> dict[str, int]:
    counts = dict.fromkeys(RUN_STATUSES, 0)
    query = (
        sa.select(RUNS.c.status, sa.func.count())
        .join(LINKS, LINKS.c.run_id == RUNS.c.run_id)
        .where(LINKS.c.sweep == sweep)
        .group_by(RUNS.c.status)
    )
    for status, n in conn.execute(query):
        counts[status] = n
    return counts


def mark_running(conn: sa.Connection, run_ids: Sequence[str]) -> None:
    now = utcnow()
    for chunk in chunks(list(run_ids)):
        conn.execute(
            sa.update(RUNS)
            .where(in_ids(conn, RUNS.c.run_id, chunk), RUNS.c.status == "pending")
            .values(status="running", attempts=RUNS.c.attempts + 1, started=now, finished=None)
        )


def mark_done(conn: sa.Connection, run_ids: Sequence[str], nodes: Sequence[Any], path: str) -> int:
    """Runs not yet done -> done with result file ``path``; returns how many changed.

    The ``status <> 'done'`` condition is the exactly-once filter: a run another
    commit already stored is left alone (``done_in`` then tells which ones changed).
    One statement per batch, the batch as one JSON object run_id -> node (parsed in
    C by the database; a driver's per-element list adaptation costs more than the
    update): this is the hot path of a sweep. A row without a node keeps the run's.
    """
    now = utcnow()
    dialect = conn.dialect.name
    statement = {"postgresql": _PG_MARK_DONE, "sqlite": _SQLITE_MARK_DONE}.get(dialect)
    if statement is not None and not (dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 33)):  # UPDATE FROM
        mapping = json.dumps(dict(zip(run_ids, nodes)))
        return conn.execute(statement, {"path": path, "now": now, "nodes": mapping}).rowcount
    changed = 0  # any other backend: one IN (...) update per node
    groups: dict[Any, list[str]] = defaultdict(list)
    for run_id, node in zip(run_ids, nodes):
        groups[node].append(run_id)
    for node, ids in groups.items():
        values: dict[str, Any] = {"status": "done", "result_file": path, "finished": now, "error": None}
        if node is not None:
            values["node"] = node
        for chunk in chunks(ids):
            stmt = sa.update(RUNS).where(RUNS.c.run_id.in_(chunk), RUNS.c.status != "done").values(values)
            changed += conn.execute(stmt).rowcount
    return changed


_SQLITE_MARK_DONE = sa.text(
    "UPDATE fs_runs SET status = 'done', result_file = :path, finished = :now, error = NULL, "
    "node = COALESCE(j.value, fs_runs.node) "
    "FROM json_each(:nodes) AS j WHERE fs_runs.run_id = j.key AND fs_runs.status <> 'done'"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))
_PG_MARK_DONE = sa.text(
    "UPDATE fs_runs AS r SET status = 'done', result_file = :path, finished = :now, error = NULL, "
    "node = COALESCE(u.node, r.node) "
    "FROM json_each_text(CAST(:nodes AS json)) AS u(run_id, node) "
    "WHERE r.run_id = u.run_id AND r.status <> 'done'"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def done_in(conn: sa.Connection, run_ids: Sequence[str], path: str) -> set[str]:
    """Which of ``run_ids`` are done with result file ``path`` (those this commit changed)."""
    found: set[str] = set()
    for chunk in chunks(list(run_ids)):
        query = sa.select(RUNS.c.run_id).where(in_ids(conn, RUNS.c.run_id, chunk), RUNS.c.result_file == path)
        found.update(conn.execute(query).scalars())
    return found


def unknown_runs(conn: sa.Connection, run_ids: Sequence[str]) -> list[str]:
    known: set[str] = set()
    for chunk in chunks(list(run_ids)):
        known.update(conn.execute(sa.select(RUNS.c.run_id).where(in_ids(conn, RUNS.c.run_id, chunk))).scalars())
    return [r for r in run_ids if r not in known]


def record_failure(conn: sa.Connection, run_id: str, error: str, node: str | None, final: bool) -> None:
    values: dict[str, Any] = {
        "status": "failed" if final else "pending",
        "error": error[:MAX_ERROR_CHARS],
        "finished": utcnow(),
    }
    if node is not None:
        values["node"] = node
    result = conn.execute(
        sa.update(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.status != "done").values(values)
    )
    if result.rowcount == 0 and unknown_runs(conn, [run_id]):
        raise StoreError(f"unknown run_id {run_id!r}; register runs with add_runs first")


def requeue(conn: sa.Connection, sweep: str, include_failed: bool) -> int:
    require_sweep(conn, sweep)
    in_sweep = RUNS.c.run_id.in_(sa.select(LINKS.c.run_id).where(LINKS.c.sweep == sweep))
    n = conn.execute(
        sa.update(RUNS).where(in_sweep, RUNS.c.status == "running").values(status="pending")
    ).rowcount
    if include_failed:  # a fresh start: the attempt budget applies again
        n += conn.execute(
            sa.update(RUNS).where(in_sweep, RUNS.c.status == "failed").values(status="pending", attempts=0)
        ).rowcount
    return n


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise StoreError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")


def sweep_run_ids(conn: sa.Connection, sweep: str) -> list[str]:
    return list(conn.execute(sa.select(LINKS.c.run_id).where(LINKS.c.sweep == sweep)).scalars())


# --- manifest, catalogue, store info -----------------------------------------------


def add_file(conn: sa.Connection, written: WrittenFile, sweep: str, schema_version: int) -> None:
    values = {
        "path": written.path,
        "sweep": sweep,
        "rows": written.rows,
        "bytes": written.bytes,
        "checksum": written.checksum,
        "schema_version": schema_version,
        "created": utcnow(),
        "schema_hash": written.schema_hash,
    }
    conn.execute(_INSERT_FILE, values)  # one statement object: compiled once, not per batch


_INSERT_FILE = sa.insert(FILES)


def manifest(conn: sa.Connection) -> list[Mapping[str, Any]]:
    return list(conn.execute(sa.select(FILES).order_by(FILES.c.created, FILES.c.path)).mappings())


def manifest_paths(conn: sa.Connection) -> dict[str, int]:
    """path -> bytes, the cheap view of the manifest."""
    return dict(conn.execute(sa.select(FILES.c.path, FILES.c.bytes)).all())


def manifest_for_reading(conn: sa.Connection) -> list[tuple[str, int, str | None]]:
    """(path, bytes, schema_hash) of every listed file, what a query needs."""
    query = sa.select(FILES.c.path, FILES.c.bytes, FILES.c.schema_hash).order_by(FILES.c.path)
    return [tuple(row) for row in conn.execute(query).all()]  # type: ignore[misc]


def newest_schema_version(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.max(FILES.c.schema_version))).scalar() or 0


def drop_files(conn: sa.Connection, paths: Iterable[str]) -> int:
    """Remove files from the manifest; their done runs go back to pending. Returns runs reset."""
    paths = list(paths)
    reset = 0
    for chunk in chunks(paths):
        reset += conn.execute(
            sa.update(RUNS)
            .where(RUNS.c.result_file.in_(chunk), RUNS.c.status == "done")
            .values(status="pending", result_file=None)
        ).rowcount
        conn.execute(sa.delete(FILES).where(FILES.c.path.in_(chunk)))
    return reset


def reopen_sweeps(conn: sa.Connection) -> list[str]:
    """Sweeps marked done whose runs are not all done any more go back to ``interrupted``; returns them.

    A sweep's status follows its runs: after a repair sends done runs back to pending,
    `flushsweep status` must not say ``done``, and `flushsweep resume` finishes the sweep.
    """
    unfinished = sa.exists().where(LINKS.c.sweep == SWEEPS.c.name, RUNS.c.run_id == LINKS.c.run_id, RUNS.c.status != "done")
    names = list(conn.execute(sa.select(SWEEPS.c.name).where(SWEEPS.c.status == "done", unfinished)).scalars())
    if names:
        conn.execute(sa.update(SWEEPS).where(SWEEPS.c.name.in_(names)).values(status="interrupted", updated=utcnow()))
    return sorted(names)


def count_files(conn: sa.Connection, sweep: str | None) -> int:
    query = sa.select(sa.func.count()).select_from(FILES)
    if sweep is not None:
        query = query.where(FILES.c.sweep == sweep)
    return conn.execute(query).scalar_one()


def catalogue(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.select(COLUMNS.c.name, COLUMNS.c.arrow_type).order_by(COLUMNS.c.first_seen)).all())


def add_columns(conn: sa.Connection, new: Mapping[str, str]) -> dict[str, str]:
    """Record new result columns; returns the catalogue as now stored (another writer may have won)."""
    current = catalogue(conn)
    fresh = {k: v for k, v in new.items() if k not in current}
    for name, kind in new.items():
        if name in current and current[name] != kind and not (current[name] == "float64" and kind == "int64"):
            raise StoreError(
                f"result column {name!r} holds {current[name]} values in this store, got {kind}; "
                "keep each column's type stable or use a new column name"
            )
    if fresh:
        now = utcnow()
        conn.execute(sa.insert(COLUMNS), [{"name": k, "arrow_type": v, "first_seen": now} for k, v in fresh.items()])
        current.update(fresh)
    return current


def store_info(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.select(INFO.c.key, INFO.c.value)).all())


def set_store_info(conn: sa.Connection, key: str, value: str) -> None:
    if conn.execute(sa.update(INFO).where(INFO.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(sa.insert(INFO).values(key=key, value=value))


# --- metadata as Arrow, for DuckDB ---------------------------------------------------


def load_arrow(conn: sa.Connection, view: str) -> "pa.Table":
    """A metadata table as Arrow, the way the ``runs``/``sweeps``/... views show it."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    s, i = pa.string(), pa.int64()
    runs = RUNS.join(CONFIGS, CONFIGS.c.run_id == RUNS.c.run_id)
    tables: dict[str, tuple[sa.FromClause, list[tuple[str, pa.DataType]]]] = {
        "runs": (runs, [("run_id", s), ("status", s), ("attempts", i), ("config", s), ("baseline_run_id", s),
                        ("error", s), ("node", s), ("created", ts), ("started", ts), ("finished", ts),
                        ("result_file", s)]),
        "sweeps": (SWEEPS, [("name", s), ("kind", s), ("status", s), ("created", ts), ("updated", ts),
                            ("spec_hash", s), ("spec_text", s), ("code_version", s), ("package_versions", s),
                            ("host", s)]),
        "sweep_runs": (LINKS, [("sweep", s), ("run_id", s)]),
        "files": (FILES, [("path", s), ("sweep", s), ("rows", i), ("bytes", i), ("checksum", s),
                          ("schema_version", i), ("created", ts)]),
    }
    source, fields = tables[view]
    schema = pa.schema(fields)
    columns_of = {c.name: c for c in source.columns} if view != "runs" else {
        **{c.name: c for c in RUNS.columns}, "config": CONFIGS.c.config, "baseline_run_id": CONFIGS.c.baseline_run_id
    }
    rows = conn.execute(sa.select(*[columns_of[name] for name, _ in fields]).select_from(source)).all()
    columns = list(zip(*rows)) if rows else [[] for _ in fields]
    return pa.Table.from_arrays([pa.array(col, type=t) for col, (_, t) in zip(columns, fields)], schema=schema)


def run_ids_arrow(run_ids: Sequence[str]) -> "pa.Table":
    import pyarrow as pa

    return pa.table({"run_id": pa.array(run_ids, pa.string())})
