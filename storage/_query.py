"""Read-only SQL over a store with DuckDB.

Views: ``results`` (the Parquet dataset: exactly the files in the manifest, read with
``union_by_name`` so old files without newer columns read as NULL), ``paired`` (each
PV row next to its baseline row, with benefit ratios), ``sweep_results`` (results
once per sweep that asked for them), and the metadata tables ``runs``, ``sweeps``,
``sweep_runs`` and ``files``, copied from SQL into Arrow only when a query names them
(so the same code serves SQLite and PostgreSQL).

Two locks keep a query read-only: statements are parsed and only SELECT (and EXPLAIN
of one) is let through, and the DuckDB connection can reach no file outside the
store directory and cannot change its own settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from storage._base import StoreError
from storage._rows import PARTITION_COLUMN
from storage.benefits import BENEFITS as PAIRED_BENEFITS

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

METADATA_VIEWS = ("runs", "sweeps", "sweep_runs", "files")
DERIVED_VIEWS = {"results": (), "paired": ("results",), "sweep_results": ("results", "sweep_runs")}
ALL_VIEWS = ("results", "paired", "sweep_results", *METADATA_VIEWS)

_DUCK_TYPES = {"bool": "BOOLEAN", "int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR"}
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN = re.compile(r"EXPLAIN\b(?:\s+ANALY[SZ]E\b)?", re.IGNORECASE)

#: Columns of a PV row compared with its baseline, and how the ratio reads "higher is better".
BENEFITS = {b.name: tuple(f"{side}.{b.metric}" for side in b.sides()) for b in PAIRED_BENEFITS}
BASE_COLUMNS = ("outcome", "real_s", "sys_s", "lat_p99_us", "ops_per_s")


def check_read_only(query: str) -> None:
    """Refuse anything but one SELECT (or EXPLAIN of one).

    Raises:
        StoreError: "query is read-only: COPY statements are refused; ..." and the like,
            or the parser's message for a query that does not parse.
    """
    import duckdb

    if not query or not query.strip():
        raise StoreError('query is empty; give a SELECT, e.g. "SELECT count(*) FROM results"')
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise StoreError(f"query does not parse: {error_line(exc)}") from None
    if len(statements) != 1:
        raise StoreError(f"query has {len(statements)} statements; run one SELECT at a time")
    _check_statement(statements[0].type, statements[0].query)


def _check_statement(kind: Any, text: str) -> None:
    import duckdb

    if kind == duckdb.StatementType.SELECT:
        return
    body = _LEADING_NOISE.sub("", text)
    if kind == duckdb.StatementType.EXPLAIN:
        match = _EXPLAIN.match(body)
        inner = duckdb.extract_statements(body[match.end():]) if match else []
        if len(inner) == 1:  # EXPLAIN ANALYZE runs its statement, so that must be a read too
            _check_statement(inner[0].type, inner[0].query)
            return
    words = body.split(None, 1)
    first = words[0].upper().rstrip(";") if words else ""
    label = first if first.isalpha() and first not in ("WITH", "FORCE") else str(kind.name).replace("_", " ")
    raise StoreError(
        f"query is read-only: {label} statements are refused; use SELECT over {', '.join(ALL_VIEWS)}"
    )


def error_line(exc: BaseException) -> str:
    """DuckDB errors span lines (a caret under the query); keep the message on one line."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(kept[:3]) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class QuerySources:
    """What a query may read: the manifest files and loaders for the metadata tables."""

    store_dir: Path
    files: Sequence[tuple[str, str | None]]  # (absolute path, schema hash) of the manifest's files
    catalogue: Mapping[str, str]  # result column -> simple type
    load_table: Callable[[str], "pa.Table"]  # metadata view name -> Arrow table


def connect(sources: QuerySources, needed: set[str]) -> "duckdb.DuckDBPyConnection":
    """An in-memory DuckDB with the ``needed`` views defined, then locked down."""
    import duckdb

    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    try:
        con.execute("SET parquet_metadata_cache = true")  # ``paired`` scans every file twice
        for name in _with_dependencies(needed):
            if name in METADATA_VIEWS:
                con.register(f"_fs_{name}", sources.load_table(name))
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM _fs_{name}")
        if needed & {"results", "paired", "sweep_results"}:
            con.execute(_results_view(sources))
        if "paired" in needed:
            con.execute(_paired_view(set(sources.catalogue)))
        if "sweep_results" in needed:
            con.execute(
                "CREATE VIEW sweep_results AS SELECT l.sweep AS sweep, r.* EXCLUDE (sweep) "
                "FROM sweep_runs l JOIN results r ON r.run_id = l.run_id"
            )
        con.execute(f"SET allowed_directories = [{_literal(str(sources.store_dir))}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def referenced_views(query: str) -> set[str]:
    """The store views a query names; all of them when it names none (SHOW TABLES) or DuckDB cannot tell."""
    import duckdb

    try:
        names = {n.lower() for n in duckdb.get_table_names(query)} & set(ALL_VIEWS)
    except duckdb.Error:
        return set(ALL_VIEWS)
    return names or set(ALL_VIEWS)


def run_query(con: "duckdb.DuckDBPyConnection", query: str, params: Sequence[Any] | None = None) -> "pa.Table":
    import duckdb

    try:
        relation = con.sql(query, params=list(params) if params else None)
        if relation is None:  # not a SELECT; check_read_only keeps these out
            raise StoreError("query returned no rows; use a SELECT")
        return _fetch_arrow(relation)
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {error_line(exc)}") from None


def _fetch_arrow(relation: Any) -> "pa.Table":
    for method in ("to_arrow_table", "fetch_arrow_table", "arrow"):  # DuckDB 2.x, then 1.x names
        fetch = getattr(relation, method, None)
        if fetch is not None:
            return fetch()
    raise StoreError("this DuckDB cannot return Arrow tables; upgrade duckdb")


def _with_dependencies(names: set[str]) -> list[str]:
    out = set(names)
    for name in names:
        out.update(DERIVED_VIEWS.get(name, ()))
    return sorted(out)


def _results_view(sources: QuerySources) -> str:
    """Files that share a schema are read as one group, without union_by_name (which would
    open every footer before the query starts); groups are combined by column name."""
    if not sources.files:
        cols = [f"CAST(NULL AS {_DUCK_TYPES[t]}) AS {_ident(n)}" for n, t in sources.catalogue.items()]
        cols = cols or ["CAST(NULL AS VARCHAR) AS run_id"]
        cols.append(f"CAST(NULL AS VARCHAR) AS {PARTITION_COLUMN}")
        return f"CREATE VIEW results AS SELECT {', '.join(cols)} WHERE false"
    groups: dict[str | None, list[str]] = {}
    for path, signature in sources.files:
        groups.setdefault(signature, []).append(path)
    selects = []
    for signature, paths in groups.items():
        files = ", ".join(_literal(f) for f in paths)
        by_name = "true" if signature is None or len(groups) > 1 else "false"
        selects.append(
            f"SELECT * FROM read_parquet([{files}], union_by_name = {by_name}, "
            f"hive_partitioning = true, hive_types = {{'{PARTITION_COLUMN}': VARCHAR}})"
        )
    return "CREATE VIEW results AS " + " UNION ALL BY NAME ".join(selects)


def _paired_view(columns: set[str]) -> str:
    def col(ref: str) -> str:
        name = ref.split(".", 1)[1]
        return ref if name in columns else "NULL"

    def ratio(num: str, den: str) -> str:
        return f"CAST({col(num)} AS DOUBLE) / NULLIF({col(den)}, 0)"

    parts = ["pv.*"]
    parts += [f"{col('base.' + c)} AS base_{c}" for c in BASE_COLUMNS]
    parts += [f"{ratio(num, den)} AS {name}" for name, (num, den) in BENEFITS.items()]
    # all vCPUs on the host per pCPU: every VM's and the background load (older rows: one VM, no load)
    host = (f"COALESCE({col('pv.vms')}, 1) * {col('pv.vcpus')} + COALESCE({col('pv.background_vcpus')}, 0)")
    parts.append(f"CAST({host} AS DOUBLE) / NULLIF({col('pv.pcpus')}, 0) AS overcommit")
    baseline = "pv.baseline_run_id" if "baseline_run_id" in columns else "CAST(NULL AS VARCHAR)"
    return (
        f"CREATE VIEW paired AS SELECT {', '.join(parts)} "
        f"FROM results pv JOIN results base ON base.run_id = {baseline}"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


__all__ = [
    "ALL_VIEWS",
    "BENEFITS",
    "QuerySources",
    "check_read_only",
    "connect",
    "error_line",
    "referenced_views",
    "run_query",
]
