"""What a worker does with a batch of runs: simulate each one, never touch the store.

This module imports ``workers`` only (and ``pyarrow`` to pack results), so a Ray
worker (or any process) can run it. A run that raises becomes an outcome carrying
its traceback: one bad run must not throw away the rest of its batch.

A batch's successful rows travel back as one Arrow table (``pack_outcomes``): the
worker pays the dict -> columns conversion, in parallel, instead of the driver,
whose commit path is what limits a sweep's write rate.
"""

from __future__ import annotations

import operator
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import pyarrow as pa

#: Batches with fewer successful rows keep them as dicts: one row gains nothing from a
#: table, whose fixed cost (schema, serialisation) exceeds a dict's (the search sends 1-run batches).
PACK_MIN_ROWS = 2


@dataclass(frozen=True, slots=True)
class RunTask:
    """One run as shipped to a worker: its id, its config as a plain dict, its baseline's id."""

    run_id: str
    config: Mapping[str, Any]
    baseline_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished attempt: ``error`` (a traceback) on failure, None on success.

    A success carries its flat result ``row``, or None when the row travels in its
    batch's table (``BatchResult.table``; ``Completion.rows_by_run`` gives it as a dict).
    """

    run_id: str
    row: dict[str, Any] | None
    error: str | None
    node: str
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a worker returns for a batch: every outcome, and the packed successful rows.

    ``table`` has one row per successful outcome whose ``row`` is None, in outcome
    order, with the same run ids; None when nothing was packed.
    """

    outcomes: tuple[RunOutcome, ...]
    table: "pa.Table | None" = None


class RunIdMismatch(RuntimeError):
    """The config no longer hashes to the run_id it was planned under (e.g. its profile was refitted)."""


def execute_run(task: RunTask, node: str, profiles: dict[str, Any] | None = None) -> RunOutcome:
    """Simulate one run and build its result row; exceptions become a failed outcome.

    ``profiles`` caches loaded cost profiles by name for the length of a batch.
    """
    from workers import RunConfig, load_profile, run_key, simulate

    t0 = time.perf_counter()
    profiles = {} if profiles is None else profiles
    try:
        config = RunConfig.from_dict(dict(task.config))
        if config.profile not in profiles:
            profiles[config.profile] = load_profile(config.profile)
        profile = profiles[config.profile]
        key = run_key(config, profile)
        if key != task.run_id:
            raise RunIdMismatch(
                f"run {task.run_id} now hashes to {key}: its config or profile {config.profile!r} changed "
                "since the sweep was planned; run the spec again to plan the new runs"
            )
        result = simulate(config, profile)
        row = {"run_id": task.run_id, **config.to_dict(), **result.to_dict(), "baseline_run_id": task.baseline_run_id, "node": node}
        return RunOutcome(task.run_id, row, None, node, time.perf_counter() - t0)
    except Exception:
        return RunOutcome(task.run_id, None, traceback.format_exc(), node, time.perf_counter() - t0)


def execute_batch(tasks: Sequence[RunTask], node: str) -> list[RunOutcome]:
    """Run a batch in order; the batch exists only so short runs amortise scheduling."""
    profiles: dict[str, Any] = {}
    return [execute_run(t, node, profiles) for t in tasks]


def pack_outcomes(outcomes: Sequence[RunOutcome], *, min_rows: int = PACK_MIN_ROWS) -> BatchResult:
    """Move the successful rows of a batch into one Arrow table (one typed column per field).

    Rows that do not make a table of flat scalars (a column mixing types, an int
    beyond 64 bits, a nested value, rows differing in their run id) stay dicts, so
    the driver's store refuses them with its own one-line error; nothing is dropped.
    """
    rows = [o.row for o in outcomes if o.row is not None and o.error is None]
    if len(rows) < min_rows:
        return BatchResult(tuple(outcomes))
    table = rows_table(rows, [o.run_id for o in outcomes if o.row is not None and o.error is None])
    if table is None:
        return BatchResult(tuple(outcomes))
    packed = tuple(
        RunOutcome(o.run_id, None, None, o.node, o.wall_s) if o.row is not None and o.error is None else o for o in outcomes
    )
    return BatchResult(packed, table)


def rows_table(rows: Sequence[Mapping[str, Any]], run_ids: Sequence[Any]) -> "pa.Table | None":
    """Rows as a table of bool/int64/float64/string (or all-None) columns whose ``run_id`` column is
    ``run_ids``; None if they do not fit."""
    try:
        import pyarrow as pa
    except ImportError:  # a worker without pyarrow: the driver converts, as before
        return None
    keys = list(rows[0])
    columns: list[Any] | None = None
    if len(keys) > 1 and sum(map(len, rows)) == len(keys) * len(rows):  # same fields in every row: C-speed transpose
        try:
            columns = list(zip(*map(operator.itemgetter(*keys), rows)))
        except KeyError:
            pass
    if columns is None:  # rows differ in their fields: every field, None where a row lacks it
        keys = list(dict.fromkeys(k for row in rows for k in row))
        columns = [[row.get(k) for row in rows] for k in keys]
    if "run_id" not in keys or list(columns[keys.index("run_id")]) != list(run_ids):
        return None
    arrays = []
    for values in columns:
        try:
            array = pa.array(values)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return None
        if not (pa.types.is_null(array.type) or pa.types.is_boolean(array.type) or pa.types.is_int64(array.type)
                or pa.types.is_float64(array.type) or pa.types.is_string(array.type)):
            return None
        arrays.append(array)
    if not all(isinstance(k, str) for k in keys):
        return None
    return pa.Table.from_arrays(arrays, names=keys)


__all__ = [
    "BatchResult", "PACK_MIN_ROWS", "RunIdMismatch", "RunOutcome", "RunTask", "execute_batch", "execute_run", "pack_outcomes",
    "rows_table",
]
