"""What a worker does with a batch of runs: simulate each one, never touch the store.

This module imports ``workers`` and storage's row encoder (``storage._rows``: pyarrow, no
SQL), so a Ray worker (or any process) can run it. A run that raises becomes an outcome
carrying its traceback: one bad run must not throw away the rest of its batch.

A batch's successful rows always travel back as one Arrow table (``pack_outcomes``), a
single run's too: the worker pays the dict -> columns conversion, in parallel, instead of
the driver, whose commit path is what limits a sweep's write rate.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True, slots=True)
class RunTask:
    """One run as shipped to a worker: its id, its config as a plain dict, its baseline's id."""

    run_id: str
    config: Mapping[str, Any]
    baseline_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished attempt: ``error`` (a traceback) on failure, None on success.

    A batch function returns each success with its flat result ``row``; ``pack_outcomes``
    moves the rows into the batch's table, so what reaches the driver has ``row`` None.
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
    """What a worker returns for a batch: every outcome, and the rows of the successful ones.

    ``table`` has one row per successful outcome, in outcome order, with the same run ids
    (None when no run succeeded). ``problem`` is the store's one-line reason when the rows
    do not make a table (a nested value, a column mixing types, an int beyond 64 bits);
    then ``table`` is None and the driver raises it, as committing the rows would.
    """

    outcomes: tuple[RunOutcome, ...]
    table: "pa.Table | None" = None
    problem: str | None = None


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


def pack_outcomes(outcomes: Sequence[RunOutcome]) -> BatchResult:
    """Move the successful rows of a batch into one Arrow table (``storage._rows.rows_table``)."""
    from storage._base import StoreError
    from storage._rows import rows_table

    rows = [o.row for o in outcomes if o.ok and o.row is not None]
    stripped = tuple(RunOutcome(o.run_id, None, o.error, o.node, o.wall_s) for o in outcomes)
    if not rows:
        return BatchResult(stripped)
    try:
        return BatchResult(stripped, rows_table(rows))
    except StoreError as exc:
        return BatchResult(stripped, problem=str(exc))


__all__ = ["BatchResult", "RunIdMismatch", "RunOutcome", "RunTask", "execute_batch", "execute_run", "pack_outcomes"]
