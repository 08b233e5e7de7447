"""RunPipeline: the runs a controller has out on an executor, and what it does with what comes back.

A controller decides which runs to submit and what a finished run means (a sweep counts
it, a search scores trials with it). Everything between the controller, the executor and
the store is done here, the same way for sweeps, searches and calibrations: submit
batches, mark them running in the store (many tasks in one transaction), take the
completions, buffer their result tables, commit them as one table, and record failed
attempts (retried while attempts are left, failed for good after that).

Only the driver writes to the store. A run's attempt is marked before its result or
failure is recorded, so attempts are counted even for runs that finish at once. Rows of
runs that are already done are dropped by the store, so a run computed twice (a resumed
session, two drivers) is stored once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sweep._executor import Completion, Executor
from sweep._task import RunOutcome, RunTask

if TYPE_CHECKING:
    import pyarrow as pa

    from storage import ResultStore


@dataclass(frozen=True, slots=True)
class Failure:
    """A run that failed for good: its attempts and the traceback of the last one."""

    run_id: str
    attempts: int
    error: str

    @property
    def summary(self) -> str:
        lines = [ln for ln in self.error.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else "unknown error"


@dataclass(slots=True)
class Collected:
    """What one ``collect`` took from the executor (failures already recorded in the store).

    ``done`` are the successful runs, whose rows wait in the pipeline for ``commit``;
    ``tables`` holds those rows as they came (one table per task), for controllers that
    read them; ``retry`` are failed attempts with attempts left, for the controller to
    submit again when it likes; ``failed`` are runs that failed for good.
    """

    done: list[RunOutcome] = field(default_factory=list)
    tables: list["pa.Table"] = field(default_factory=list)
    retry: list[RunTask] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


class RunPipeline:
    """Submits runs, takes back their results and failures, and commits results to the store.

    Args:
        store: the ResultStore (only the driver writes to it).
        sweep: the store sweep the results are committed under.
        executor: an Executor, or a factory called when the first batch is submitted
            (then the executor is closed by ``close``).
        max_attempts: tries of a run before it fails for good.
        commit_rows: ``commit(force=False)`` commits once this many rows wait...
        commit_interval_s: ...or once the oldest has waited this long.
        mark_interval_s: submitted runs are marked ``running`` at most this often.
    """

    def __init__(
        self,
        *,
        store: "ResultStore",
        sweep: str,
        executor: Executor | Callable[[], Executor],
        max_attempts: int,
        commit_rows: int = 500,
        commit_interval_s: float = 5.0,
        mark_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.sweep = sweep
        self.max_attempts = max_attempts
        self.commit_rows = commit_rows
        self.commit_interval_s = commit_interval_s
        self.mark_interval_s = mark_interval_s
        self._clock = clock
        self._factory = None if isinstance(executor, Executor) else executor
        self._executor: Executor | None = executor if isinstance(executor, Executor) else None
        self._tickets: dict[int, list[RunTask]] = {}
        self._attempts: Counter[str] = Counter()
        self._tables: list[tuple[list[str], "pa.Table"]] = []
        self._buffered: set[str] = set()
        self._buffer_since: float | None = None
        self._unmarked: list[str] = []
        self._last_mark = -float("inf")
        self.store_s = 0.0  # seconds spent in store calls (a search reports them)

    # --- state ------------------------------------------------------------------
    @property
    def executor(self) -> Executor:
        """The executor (created now if it came as a factory)."""
        if self._executor is None:
            assert self._factory is not None
            self._executor = self._factory()
        return self._executor

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet collected."""
        return len(self._tickets)

    @property
    def buffered(self) -> set[str]:
        """Runs whose rows wait to be committed."""
        return self._buffered

    def attempts(self, run_id: str) -> int:
        """Attempts of the run submitted in this session."""
        return self._attempts[run_id]

    # --- runs out ---------------------------------------------------------------
    def submit(self, batches: Sequence[Sequence[RunTask]]) -> None:
        """Send each batch as one task; the runs are marked running with others (``mark_interval_s``)."""
        if not batches:
            return
        for batch in batches:
            for task in batch:
                self._attempts[task.run_id] += 1
                self._unmarked.append(task.run_id)
        if self._clock() - self._last_mark >= self.mark_interval_s:
            self.mark()
        for batch in batches:
            self._tickets[self.executor.submit(batch)] = list(batch)

    def collect(self, timeout: float) -> Collected:
        """Take what finished within ``timeout`` (none in flight: return at once).

        Raises:
            StoreError: a worker's rows do not make a table (the store's one-line reason).
        """
        out = Collected()
        if not self._tickets:
            return out
        for completion in self.executor.wait(timeout):
            self._take(completion, out)
        return out

    def _take(self, completion: Completion, out: Collected) -> None:
        tasks = self._tickets.pop(completion.ticket, None)
        if tasks is None:  # a ticket cancelled earlier that came back anyway
            return
        if completion.problem is not None:
            from storage import StoreError

            raise StoreError(completion.problem)
        if completion.outcomes is None:
            for task in tasks:
                self._failed(task, f"task lost: {completion.error}", None, out)
            return
        returned = {o.run_id: o for o in completion.outcomes}
        table = completion.table
        packed = set(table.column("run_id").to_pylist()) if table is not None else set()
        done: list[str] = []
        for task in tasks:
            outcome = returned.get(task.run_id)
            if outcome is None:
                self._failed(task, "the worker returned no outcome for this run", None, out)
            elif not outcome.ok:
                self._failed(task, outcome.error or "", outcome.node, out)
            elif task.run_id not in packed:
                self._failed(task, "the worker returned no result row for this run", outcome.node, out)
            else:
                out.done.append(outcome)
                done.append(task.run_id)
        if not done or table is None:
            return
        if len(done) != table.num_rows:  # rows of runs this ticket did not ask for: not ours to store
            import pyarrow as pa
            import pyarrow.compute as pc

            table = table.filter(pc.is_in(table.column("run_id"), value_set=pa.array(done, pa.string())))
        self._tables.append((done, table))
        self._buffered.update(done)
        if self._buffer_since is None:
            self._buffer_since = self._clock()
        out.tables.append(table)

    def _failed(self, task: RunTask, error: str, node: str | None, out: Collected) -> None:
        rid = task.run_id
        final = self._attempts[rid] >= self.max_attempts
        self.mark()  # the failed attempt must be counted before it is recorded
        t0 = time.perf_counter()
        self.store.record_failure(rid, error, node=node, final=final)
        self.store_s += time.perf_counter() - t0
        if final:
            out.failed.append(Failure(rid, self._attempts[rid], error))
        else:
            out.retry.append(task)

    # --- results in -------------------------------------------------------------
    def commit_due(self) -> bool:
        if not self._tables:
            return False
        return len(self._buffered) >= self.commit_rows or (
            self._buffer_since is not None and self._clock() - self._buffer_since >= self.commit_interval_s
        )

    def commit(self, *, force: bool = True) -> list[str]:
        """Commit the buffered rows (unless ``force`` is off and none is due); returns the runs committed.

        The tables go as one (``concat_tables``, widening as the store does); when their
        column types clash, one commit per table, so the store names the column it refuses.
        """
        if not self._tables or not (force or self.commit_due()):
            return []
        parts, self._tables, self._buffered, self._buffer_since = self._tables, [], set(), None
        self.mark()  # first, so a run's attempt is counted before it is done
        combined = _concat([table for _, table in parts])
        if combined is not None:
            parts = [([rid for ids, _ in parts for rid in ids], combined)]
        committed: list[str] = []
        t0 = time.perf_counter()
        try:
            for ids, table in parts:
                self.store.commit_results(self.sweep, table)
                committed.extend(ids)
        finally:
            self.store_s += time.perf_counter() - t0
        return committed

    def mark(self) -> None:
        """Mark the runs submitted since the last mark ``running`` (one transaction)."""
        self._last_mark = self._clock()
        if self._unmarked:
            ids, self._unmarked = self._unmarked, []
            t0 = time.perf_counter()
            self.store.mark_running(ids)
            self.store_s += time.perf_counter() - t0

    # --- the end ----------------------------------------------------------------
    def cancel(self) -> list[RunTask]:
        """Give up on every task in flight; returns their runs (their results, if any come, are ignored)."""
        if not self._tickets:
            return []
        self.executor.cancel()
        dropped = [task for tasks in self._tickets.values() for task in tasks]
        self._tickets.clear()
        return dropped

    def close(self) -> None:
        """Close the executor if this pipeline started it."""
        if self._factory is not None and self._executor is not None:
            self._executor.close()


def _concat(tables: list[Any]) -> "pa.Table | None":
    """The tables as one (a column missing or all-None in some is NULL there, an int column joining a float one
    becomes float, as the store widens it); None when a column's types clash."""
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


__all__ = ["Collected", "Failure", "RunPipeline"]
