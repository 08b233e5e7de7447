"""Result rows (flat dicts of scalars) to an Arrow table with stable column types.

Storage does not know the engine's fields: it infers each column's type from the
values the first time the column appears, records it in the catalogue
(``fs_columns``), and holds later batches to it (an int may widen to float; a float
never narrows to int, which Arrow would do by silently truncating). A column that is
None in every row of a batch is left out of that file; read with ``union_by_name``
it reads as NULL, the same thing.
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


def encode_rows(rows: Sequence[Mapping[str, Any]], catalogue: Mapping[str, str]) -> EncodedBatch:
    """Turn rows into a table typed by ``catalogue`` (name -> simple type), adding new columns.

    Raises:
        StoreError: a row lacks ``run_id``, a value is not a flat scalar, or a column's
            type differs from what the store already holds.
    """
    import pyarrow as pa

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
    arrays: list[pa.Array] = []
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
    names.append("schema_version")
    arrays.append(pa.array([RESULTS_SCHEMA_VERSION] * len(rows), pa.int64()))
    if "schema_version" not in catalogue:
        new["schema_version"] = "int64"
    return EncodedBatch(table=pa.Table.from_arrays(arrays, names=names), new_columns=new)


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
    shown = repr(example)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if known is None:
        return (
            f"result column {name!r} has value {shown} ({type(example).__name__}); result rows hold flat scalars "
            "(bool, int within 64 bits, float, str) of one type per column"
        )
    return (
        f"result column {name!r} holds {known} values in this store, got {shown} ({type(example).__name__}); "
        "keep each column's type stable or use a new column name"
    )


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
    "FIXED_COLUMNS",
    "PARTITION_COLUMN",
    "RESERVED_COLUMNS",
    "RESULTS_SCHEMA_VERSION",
    "arrow_type",
    "encode_rows",
    "simple_type",
]
