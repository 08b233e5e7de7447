"""Result rows (flat dicts of scalars, or an Arrow table of them) to an Arrow table with stable column types.

Storage does not know the engine's fields: it infers each column's type from the
values the first time the column appears, records it in the catalogue
(``fs_columns``), and holds later batches to it (an int may widen to float; a float
never narrows to int, which Arrow would do by silently truncating). A column that is
None in every row of a batch is left out of that file; read with ``union_by_name``
it reads as NULL, the same thing. An Arrow table is held to the same rules, column
by column, without touching its values (unless a column must widen).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from storage._base import StoreError

if TYPE_CHECKING:
    import pyarrow as pa

#: Version of the result-row layout, written as the ``schema_version`` column of every
#: file. Bump it when a change needs more than new additive columns.
RESULTS_SCHEMA_VERSION = 1

#: The Hive partition key: it lives in the directory name, never inside a file.
PARTITION_COLUMN = "sweep"
#: Columns storage writes itself; a row's own values for them are ignored.
RESERVED_COLUMNS = frozenset({PARTITION_COLUMN, "schema_version"})
#: Columns whose type is fixed up front, so a batch where they are all None is still typed.
FIXED_COLUMNS = {"run_id": "string", "baseline_run_id": "string", "node": "string", "schema_version": "int64"}

SIMPLE_TYPES = ("bool", "int64", "float64", "string")


def arrow_type(name: str) -> "pa.DataType":
    import pyarrow as pa

    return {"bool": pa.bool_, "int64": pa.int64, "float64": pa.float64, "string": pa.string}[name]()


def simple_type(t: "pa.DataType") -> str | None:
    """Our name for an inferred Arrow type; None for the null type; raises for anything else."""
    import pyarrow as pa

    if pa.types.is_null(t):
        return None
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t):
        return "float64"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    raise TypeError(str(t))


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    table: "pa.Table"
    new_columns: dict[str, str]  # columns this batch adds to the catalogue, name -> simple type


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    """What ``commit_results`` was handed, one row per run (the first of duplicates kept)."""

    run_ids: list[str]
    nodes: list[Any]  # the row's ``node`` (None: keep what the run has)
    rows: Sequence[Mapping[str, Any]] | None = None
    table: "pa.Table | None" = None

    def encode(self, catalogue: Mapping[str, str]) -> EncodedBatch:
        if self.table is not None:
            return encode_table(self.table, catalogue)
        assert self.rows is not None
        return encode_rows(self.rows, catalogue)


def incoming(rows: "Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch") -> IncomingBatch:
    """Check the run ids of a batch and drop repeated runs (the first row of a run wins).

    Raises:
        StoreError: a row has no run_id, or one that is not a string.
    """
    import pyarrow as pa

    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        return _incoming_table(rows)
    try:
        run_ids = list(map(operator.itemgetter("run_id"), rows))
    except (KeyError, TypeError):
        raise StoreError("every result row needs a 'run_id' (the run's content hash); add it to the rows") from None
    if set(map(type, run_ids)) - {str}:
        bad = next(r for r in run_ids if type(r) is not str)
        raise StoreError(f"result row run_id {bad!r} is not a string; pass the run's content hash")
    if len(set(run_ids)) != len(run_ids):
        seen: set[str] = set()
        rows = [row for row in rows if not (row["run_id"] in seen or seen.add(row["run_id"]))]  # type: ignore[func-returns-value]
        run_ids = [row["run_id"] for row in rows]
    return IncomingBatch(run_ids=run_ids, nodes=[row.get("node") for row in rows], rows=rows)


def _incoming_table(table: "pa.Table") -> IncomingBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    if "run_id" not in table.column_names:
        raise StoreError("a result table needs a 'run_id' column (the run's content hash); add it")
    ids = table.column("run_id")
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        raise StoreError(f"result table column run_id is {ids.type}, not text; pass the runs' content hashes")
    if ids.null_count:
        raise StoreError("a result row has run_id None; every row needs its run's content hash")
    run_ids = ids.to_pylist()
    if len(set(run_ids)) != len(run_ids):
        first = dict(zip(reversed(run_ids), range(len(run_ids) - 1, -1, -1)))  # run_id -> first row index
        table = table.take(pa.array(sorted(first.values()), pa.int64()))
        run_ids = table.column("run_id").to_pylist()
    if "node" in table.column_names and _kind(table.column("node").type) in ("string", None):
        nodes = pc.cast(table.column("node"), pa.string()).to_pylist()
    else:
        nodes = [None] * len(run_ids)
    return IncomingBatch(run_ids=run_ids, nodes=nodes, table=table)


def encode_table(table: "pa.Table", catalogue: Mapping[str, str]) -> EncodedBatch:
    """Hold an Arrow table to ``catalogue`` as ``encode_rows`` holds rows: same types, same errors.

    Columns of a compatible type are cast (int32 -> int64, float32 -> float64,
    large_string or dictionary -> string, int -> float where the store holds floats).

    Raises:
        StoreError: a nested column, a type the store holds differently, a clashing name.
    """
    import pyarrow as pa

    if len(set(table.column_names)) != table.num_columns:
        twice = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
        raise StoreError(f"result table has column {twice[0]!r} more than once; give each column one name")
    lower = {name.lower(): name for name in catalogue}
    names: list[str] = []
    arrays: list[Any] = []
    new: dict[str, str] = {}
    order = sorted(table.column_names, key=lambda n: n != "run_id")
    for name in order:
        if name in RESERVED_COLUMNS:
            continue
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        kind = _kind(column.type)
        if kind == "unsupported":
            raise StoreError(
                f"result column {name!r} has type {column.type}; result rows hold flat scalars "
                "(bool, int within 64 bits, float, str) of one type per column"
            )
        known = catalogue.get(name) or FIXED_COLUMNS.get(name)
        if known is None:
            _check_new_name(name, lower)
            if kind is None:  # NULL throughout: leave it for a later batch, as encode_rows does
                continue
            new[name] = kind
            lower[name.lower()] = name
            target = kind
        elif kind is None or kind == known or (known == "float64" and kind == "int64"):
            target = known
            if name not in catalogue:
                new[name] = known
        else:
            raise StoreError(
                f"result column {name!r} holds {known} values in this store, got {column.type} values; "
                "keep each column's type stable or use a new column name"
            )
        if column.type != arrow_type(target):
            try:
                column = column.cast(arrow_type(target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise StoreError(f"result column {name!r} cannot be stored as {target}: {exc}") from None
        names.append(name)
        arrays.append(column)
    names.append("schema_version")
    arrays.append(pa.repeat(pa.scalar(RESULTS_SCHEMA_VERSION, pa.int64()), table.num_rows))
    if "schema_version" not in catalogue:
        new["schema_version"] = "int64"
    return EncodedBatch(table=pa.Table.from_arrays(arrays, names=names), new_columns=new)


def _kind(t: "pa.DataType") -> str | None:
    """``simple_type``, with 'unsupported' instead of raising (nested, binary, temporal, ...)."""
    try:
        return simple_type(t)
    except TypeError:
        return "unsupported"


def encode_rows(rows: Sequence[Mapping[str, Any]], catalogue: Mapping[str, str]) -> EncodedBatch:
    """Turn rows into a table typed by ``catalogue`` (name -> simple type), adding new columns.

    Raises:
        StoreError: a row lacks ``run_id``, a value is not a flat scalar, or a column's
            type differs from what the store already holds.
    """
    import pyarrow as pa

    names, arrays, new = _typed_columns(rows, catalogue)
    names.append("schema_version")
    arrays.append(pa.repeat(pa.scalar(RESULTS_SCHEMA_VERSION, pa.int64()), len(rows)))
    if "schema_version" not in catalogue:
        new["schema_version"] = "int64"
    return EncodedBatch(table=pa.Table.from_arrays(arrays, names=names), new_columns=new)


def rows_table(rows: Sequence[Mapping[str, Any]]) -> "pa.Table":
    """Result rows as one Arrow table (bool, int64, float64 or string columns, ``run_id`` first), as
    ``commit_results`` takes it: the only dict -> Arrow conversion of the project (a Ray worker packs
    its batch's rows with it, so it must stay importable without SQL or DuckDB).

    A column None in every row is left out (the store reads it as NULL). Storage's own columns
    (``sweep``, ``schema_version``) are dropped: the store writes them.

    Raises:
        StoreError: the rows do not make such a table: a value that is not a flat scalar, a column
            mixing types, an int beyond 64 bits, no ``run_id``; one line naming the column.
    """
    import pyarrow as pa

    if not rows:
        raise StoreError("no result rows to encode; pass at least one row")
    names, arrays, _ = _typed_columns(rows, {})
    return pa.Table.from_arrays(arrays, names=names)


def _typed_columns(rows: Sequence[Mapping[str, Any]], catalogue: Mapping[str, str]) -> tuple[list[str], list[Any], dict[str, str]]:
    """Rows as typed columns (``run_id`` first): names, arrays, and the columns new to ``catalogue``."""
    keys = [k for k in rows[0] if k not in RESERVED_COLUMNS]
    columns = _transpose(rows, keys)
    if columns is None:  # rows differ in their keys: slow path
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        keys = [k for k in seen if k not in RESERVED_COLUMNS]
        columns = [[row.get(k) for row in rows] for k in keys]
    if "run_id" not in keys:
        raise StoreError("every result row needs a 'run_id' (the run's content hash); add it to the rows")
    order = sorted(range(len(keys)), key=lambda i: keys[i] != "run_id")  # run_id first, else as given
    lower = {name.lower(): name for name in catalogue}
    names: list[str] = []
    arrays: list[Any] = []
    new: dict[str, str] = {}
    for i in order:
        name, values = keys[i], columns[i]
        known = catalogue.get(name) or FIXED_COLUMNS.get(name)
        if known is None:
            _check_new_name(name, lower)
        array = _to_array(name, values, known)
        if array is None:  # a new column that is None throughout: leave it for a later batch
            continue
        if known is None or name not in catalogue:
            new[name] = simple_type(array.type) or known  # type: ignore[assignment]
            lower[name.lower()] = name
        names.append(name)
        arrays.append(array)
    if arrays[0].null_count:
        raise StoreError("a result row has run_id None; every row needs its run's content hash")
    return names, arrays, new


def _transpose(rows: Sequence[Mapping[str, Any]], keys: list[str]) -> list[tuple[Any, ...]] | None:
    """Rows to columns in C speed when every row has exactly ``keys`` (plus reserved ones)."""
    width = len(rows[0])
    if sum(map(len, rows)) != width * len(rows):
        return None
    if not keys:
        return []
    get = operator.itemgetter(*keys)
    try:
        if len(keys) == 1:
            return [tuple(map(get, rows))]
        return list(zip(*map(get, rows)))
    except KeyError:
        return None


def _to_array(name: str, values: Sequence[Any], known: str | None) -> "pa.Array | None":
    import pyarrow as pa

    if known in ("float64", "string", "bool"):
        # Typed conversion is several times faster than inference, and for these
        # types it refuses what does not fit (an int widening to float is fine).
        try:
            return pa.array(values, arrow_type(known))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            raise StoreError(_bad_values(name, values, known)) from None
    try:  # int64 or new: infer, because typed int64 conversion silently truncates floats
        array = pa.array(values)
        inferred = simple_type(array.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        raise StoreError(_bad_values(name, values, known)) from None
    if inferred is None:
        return pa.nulls(len(values), arrow_type(known)) if known else None
    if known is None or inferred == known:
        return array
    if known == "float64" and inferred == "int64":
        return array.cast(pa.float64())
    raise StoreError(_bad_values(name, values, known))


def _bad_values(name: str, values: Sequence[Any], known: str | None) -> str:
    kinds = {"bool": (bool,), "int64": (int,), "float64": (int, float), "string": (str,)}
    allowed = kinds.get(known or "", (bool, int, float, str))
    for v in values:
        if v is None:
            continue
        ok = isinstance(v, allowed) and not (known in ("int64", "float64") and isinstance(v, bool))
        if not ok or (isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63):
            example = v
            break
    else:
        example = next((v for v in values if v is not None), None)
    shown = _shown(example)
    kinds = list(dict.fromkeys(type(v) for v in values if v is not None))
    if known is None and len(kinds) > 1 and all(k in (bool, int, float, str) for k in kinds):
        first = [_shown(next(v for v in values if type(v) is k)) for k in kinds]
        return (
            f"result column {name!r} mixes {' and '.join(k.__name__ for k in kinds)} values ({', '.join(first)}); "
            "result rows hold flat scalars (bool, int within 64 bits, float, str) of one type per column"
        )
    if known is None:
        return (
            f"result column {name!r} has value {shown} ({type(example).__name__}); result rows hold flat scalars "
            "(bool, int within 64 bits, float, str) of one type per column"
        )
    return (
        f"result column {name!r} holds {known} values in this store, got {shown} ({type(example).__name__}); "
        "keep each column's type stable or use a new column name"
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_new_name(name: Any, lower: Mapping[str, str]) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise StoreError(f"result column name {name!r} must be a non-empty string without surrounding spaces")
    clash = lower.get(name.lower())
    if clash is not None and clash != name:
        raise StoreError(
            f"result column {name!r} clashes with existing column {clash!r} (SQL names ignore case); rename it"
        )


__all__ = [
    "EncodedBatch",
    "IncomingBatch",
    "FIXED_COLUMNS",
    "PARTITION_COLUMN",
    "RESERVED_COLUMNS",
    "RESULTS_SCHEMA_VERSION",
    "arrow_type",
    "encode_rows",
    "encode_table",
    "incoming",
    "rows_table",
    "simple_type",
]
