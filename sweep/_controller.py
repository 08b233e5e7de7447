"""SweepController: keeps the executor busy and commits results, one event per step.

Steady state, no batch barrier: at most ``max_in_flight`` tasks are out at any
time, and as each returns another is submitted. Short runs are batched so a task
lasts about ``min_task_s``. Only the driver talks to the store: results are
buffered and committed in batches, so a crash loses at most the uncommitted
buffer, and those runs are computed again on resume (never stored twice: the
store drops a row for a run that is already done). Results arrive as one Arrow
table per task (packed by the worker) and are committed as one concatenated table,
so the driver never converts rows itself.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from sweep._executor import Completion, Executor
from sweep._progress import Progress, ProgressState
from sweep._task import RunOutcome, RunTask, rows_table

if TYPE_CHECKING:
    import pyarrow as pa

RunState = Literal["queued", "in_flight", "buffered", "done", "failed"]
StopReason = Literal["interrupted", "cancelled", "failed"]

#: Allowed run-state transitions (a retried run goes back to queued).
_TRANSITIONS: dict[RunState, tuple[RunState, ...]] = {
    "queued": ("in_flight",),
    "in_flight": ("buffered", "queued", "failed"),
    "buffered": ("done",),
    "done": (),
    "failed": (),
}


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a sweep executes.

    Args:
        max_attempts: tries per run in this session before it is recorded failed for good.
        fail_fast: stop the sweep at the first run that fails for good.
        max_in_flight: tasks submitted but not returned (default: 2 x workers, so no worker waits).
        min_task_s: batch short runs until a task lasts about this long.
        max_batch: most runs in one task.
        commit_rows: commit when this many result rows wait...
        commit_interval_s: ...or when the oldest has waited this long.
        poll_s: longest wait for a task; also how quickly a stop request is noticed.
        cancel_check_s: how often to look for ``flushsweep cancel`` in the store.
        mark_interval_s: submitted runs are marked ``running`` in the store at most this often
            (one transaction for many tasks; the mark is bookkeeping, not what makes runs exactly-once).
    """

    max_attempts: int = 3
    fail_fast: bool = False
    max_in_flight: int | None = None
    min_task_s: float = 0.1
    max_batch: int = 256
    commit_rows: int = 500
    commit_interval_s: float = 5.0
    poll_s: float = 0.5
    cancel_check_s: float = 2.0
    mark_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be >= 1, got {self.max_attempts}")


@dataclass(slots=True)
class _Run:
    task: RunTask
    state: RunState = "queued"
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    run_id: str
    attempts: int
    error: str  # the traceback of the last attempt

    @property
    def summary(self) -> str:
        lines = [ln for ln in self.error.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else "unknown error"


@dataclass(frozen=True, slots=True)
class SweepReport:
    """How a session of a sweep ended. ``status`` is what the sweep was marked in the store."""

    sweep: str
    status: str
    total: int
    skipped: int
    done: int
    failed: int
    remaining: int
    retried: int
    elapsed_s: float
    run_time_s: float
    failures: tuple[Failure, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return self.remaining == 0 and self.failed == 0


class SweepController:
    """Runs a sweep's pending runs on an executor and commits their results to the store.

    Args:
        store: the ResultStore (only this controller writes to it).
        sweep: the sweep's name (it must exist in the store with ``tasks`` registered).
        executor: where runs compute.
        tasks: the runs still to do, in order.
        skipped: runs of the sweep already done before this session.
        options: RunOptions.
        progress: where progress goes (None: nowhere).
    """

    def __init__(
        self,
        *,
        store: Any,
        sweep: str,
        executor: Executor,
        tasks: Sequence[RunTask],
        skipped: int = 0,
        options: RunOptions = RunOptions(),
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.sweep = sweep
        self.executor = executor
        self.options = options
        self.progress = progress
        self._clock = clock
        self._runs = {t.run_id: _Run(t) for t in tasks}
        self._by_state: dict[RunState, set[str]] = {s: set() for s in _TRANSITIONS}
        self._by_state["queued"] = set(self._runs)
        self._queue: deque[str] = deque(self._runs)
        self._tickets: dict[int, list[str]] = {}
        self._buffer: list[dict[str, Any]] = []  # rows that came back as dicts
        self._tables: list[tuple[list[str], "pa.Table"]] = []  # (run ids, rows) of each packed task
        self._buffered = 0
        self._buffer_since: float | None = None
        self._unmarked: list[str] = []
        self._last_mark = -math.inf
        self._skipped = skipped
        self._retried = 0
        self._run_time = 0.0
        self._per_run_s: float | None = None
        self._stop: StopReason | None = None
        self._last_cancel_check = clock()
        self._start = clock()
        if progress is not None:
            progress.restart()

    # --- public -----------------------------------------------------------------
    def request_stop(self, reason: StopReason = "interrupted") -> None:
        """Stop submitting; in-flight work is dropped and the sweep is marked ``reason``. Safe from a signal handler."""
        if self._stop is None:
            self._stop = reason

    @property
    def finished(self) -> bool:
        """A stop request ends the session at once (in-flight work is dropped); otherwise run out the queue."""
        if self._stop is not None:
            return True
        return not self._by_state["queued"] and not self._tickets and not self._buffered

    def run(self) -> SweepReport:
        """Step until every run is done or failed, or a stop is requested; always leaves the store consistent.

        Raises:
            Whatever a step raised (e.g. StoreError), after marking the sweep interrupted.
        """
        try:
            while not self.finished:
                self.step()
        except KeyboardInterrupt:  # no signal handler installed: treat Ctrl-C as a stop request
            self.request_stop("interrupted")
        except BaseException:
            self.request_stop("interrupted")
            try:
                self._shutdown()
            except Exception:  # the store may be what failed; the original error is the one to report
                pass
            raise
        self._shutdown()
        return self.report()

    def step(self) -> None:
        """One round: look for a stop, fill the pipeline, take what finished, commit if due, show progress."""
        self._check_stop()
        if self._stop is None:
            self._submit()
        self._collect()
        self._commit(force=self._stop is not None or not self._tickets)
        self._show()

    def state(self) -> ProgressState:
        return ProgressState(
            total=len(self._runs) + self._skipped,
            skipped=self._skipped,
            done=len(self._by_state["done"]),
            failed=len(self._by_state["failed"]),
            retried=self._retried,
            in_flight=len(self._by_state["in_flight"]),
        )

    def report(self) -> SweepReport:
        st = self.state()
        failures = tuple(
            Failure(rid, self._runs[rid].attempts, self._runs[rid].last_error or "")
            for rid in self._runs
            if rid in self._by_state["failed"]
        )
        return SweepReport(
            sweep=self.sweep, status=self._final_status(), total=st.total, skipped=st.skipped, done=st.done,
            failed=st.failed, remaining=st.remaining, retried=st.retried, elapsed_s=self._clock() - self._start,
            run_time_s=self._run_time, failures=failures,
        )

    # --- phases -----------------------------------------------------------------
    def _check_stop(self) -> None:
        now = self._clock()
        if self._stop is None and now - self._last_cancel_check >= self.options.cancel_check_s:
            self._last_cancel_check = now
            record = self.store.find_sweep(self.sweep)
            if record is not None and record.status == "cancelled":
                self.request_stop("cancelled")

    def _submit(self) -> None:
        limit = self.options.max_in_flight or 2 * self.executor.workers
        batches: list[list[str]] = []
        while self._queue and len(self._tickets) + len(batches) < limit:
            size = self._batch_size()
            batches.append([self._queue.popleft() for _ in range(min(size, len(self._queue)))])
        if not batches:
            return
        self._unmarked.extend(rid for batch in batches for rid in batch)
        if self._clock() - self._last_mark >= self.options.mark_interval_s:
            self._mark_running()
        for batch in batches:
            for rid in batch:
                self._set_state(rid, "in_flight")
                self._runs[rid].attempts += 1
            ticket = self.executor.submit([self._runs[rid].task for rid in batch])
            self._tickets[ticket] = batch

    def _collect(self) -> None:
        timeout = self.options.poll_s if self._tickets else 0.0
        for completion in self.executor.wait(timeout):
            self._on_completion(completion)

    def _commit(self, *, force: bool) -> None:
        if not self._buffered:
            return
        due = (
            force
            or self._buffered >= self.options.commit_rows
            or (self._buffer_since is not None and self._clock() - self._buffer_since >= self.options.commit_interval_s)
        )
        if not due:
            return
        parts: list[tuple[list[str], Any]] = self._tables
        if self._buffer:  # single-run tasks, or rows a worker could not pack
            ids = [row.get("run_id") for row in self._buffer]
            table = rows_table(self._buffer, ids)
            parts.append((ids, self._buffer if table is None else table))
        self._buffer, self._tables, self._buffered, self._buffer_since = [], [], 0, None
        self._mark_running()  # first, so a run's attempt is counted before it is done
        tables = [part for _, part in parts if not isinstance(part, list)]
        if len(tables) == len(parts):
            combined = _concat(tables)
            if combined is not None:
                parts = [([rid for ids, _ in parts for rid in ids], combined)]
        for ids, part in parts:  # one commit, or one per part when they do not combine (the store names the column)
            self.store.commit_results(self.sweep, part)
            for rid in ids:
                self._set_state(rid, "done")

    def _show(self) -> None:
        if self.progress is not None:
            self.progress.update(self.state())

    # --- events -----------------------------------------------------------------
    def _on_completion(self, completion: Completion) -> None:
        batch = self._tickets.pop(completion.ticket, None)
        if batch is None:  # a ticket cancelled earlier that came back anyway
            return
        if completion.outcomes is None:
            for rid in batch:
                self._on_failure(rid, f"task lost: {completion.error}", node=None)
            return
        returned = {o.run_id: o for o in completion.outcomes}
        packed: list[str] = []
        for rid in batch:
            outcome = returned.get(rid)
            if outcome is None:
                self._on_failure(rid, "the worker returned no outcome for this run", node=None)
            elif outcome.ok and outcome.row is None and completion.table is None:
                self._on_failure(rid, "the worker returned neither a result row nor a table for this run", node=outcome.node)
            elif outcome.ok:
                self._on_success(outcome)
                if outcome.row is None:
                    packed.append(rid)
            else:
                self._on_failure(rid, outcome.error or "", node=outcome.node)
        if packed and completion.table is not None:
            self._tables.append((packed, completion.table))
            self._buffered += len(packed)

    def _on_success(self, outcome: RunOutcome) -> None:
        self._run_time += outcome.wall_s
        self._per_run_s = outcome.wall_s if self._per_run_s is None else 0.8 * self._per_run_s + 0.2 * outcome.wall_s
        self._set_state(outcome.run_id, "buffered")
        if outcome.row is not None:  # otherwise the row is in its task's table
            self._buffer.append(outcome.row)
            self._buffered += 1
        if self._buffer_since is None:
            self._buffer_since = self._clock()

    def _on_failure(self, run_id: str, error: str, *, node: str | None) -> None:
        run = self._runs[run_id]
        run.last_error = error
        final = run.attempts >= self.options.max_attempts
        self._mark_running()  # the failed attempt must be counted before it is recorded
        self.store.record_failure(run_id, error, node=node, final=final)
        if final:
            self._set_state(run_id, "failed")
            if self.options.fail_fast:
                self.request_stop("failed")
        else:
            self._retried += 1
            self._set_state(run_id, "queued")
            self._queue.append(run_id)

    # --- helpers ----------------------------------------------------------------
    def _mark_running(self) -> None:
        self._last_mark = self._clock()
        if self._unmarked:
            ids, self._unmarked = self._unmarked, []
            self.store.mark_running(ids)

    def _set_state(self, run_id: str, new: RunState) -> None:
        run = self._runs[run_id]
        assert new in _TRANSITIONS[run.state], f"run {run_id}: {run.state} -> {new} is not a valid transition"
        assert run_id in self._by_state[run.state]
        self._by_state[run.state].remove(run_id)
        self._by_state[new].add(run_id)
        run.state = new

    def _batch_size(self) -> int:
        if self._per_run_s is None:
            return 1  # nothing measured yet: the first tasks are single runs
        size = math.ceil(self.options.min_task_s / max(self._per_run_s, 1e-6))
        share = math.ceil(len(self._queue) / max(1, self.executor.workers))  # keep every worker busy at the tail
        return max(1, min(size, self.options.max_batch, share))

    def _final_status(self) -> str:
        if self._stop is not None:
            return self._stop
        return "failed" if self._by_state["failed"] else "done"

    def _shutdown(self) -> None:
        """Drop in-flight work, commit what finished, hand unfinished runs back, mark the sweep."""
        if self._tickets:
            self.executor.cancel()
            for batch in self._tickets.values():
                for rid in batch:
                    self._set_state(rid, "queued")
            self._tickets.clear()
        self._commit(force=True)
        self._mark_running()
        if self._stop is not None and self._by_state["queued"]:
            self.store.requeue(self.sweep)  # running -> pending: resume picks them up
        if self._stop != "cancelled":
            self.store.set_sweep_status(self.sweep, self._final_status())
        if self.progress is not None:
            self.progress.update(self.state(), force=True)
            self.progress.close()


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


__all__ = ["Failure", "RunOptions", "SweepController", "SweepReport"]
