"""SweepController: keeps the executor busy and commits results, one event per step.

Steady state, no batch barrier: at most ``max_in_flight`` tasks are out at any
time, and as each returns another is submitted. Short runs are batched so a task
lasts about ``min_task_s``. Only the driver talks to the store: results are
buffered and committed in batches, so a crash loses at most the uncommitted
buffer, and those runs are computed again on resume (never stored twice: the
store drops a row for a run that is already done). Results arrive as one Arrow
table per task (packed by the worker) and are committed as one concatenated table,
so the driver never converts rows itself.

``Controller`` is what the sweep's controller shares with the search's
(``sweep.search.SearchController``): the stop request and the cancel check, the run
loop that always leaves the store consistent, and the order of the shutdown; both
move runs through one ``RunPipeline`` (submit, collect, commit, record failures).
"""

from __future__ import annotations

import abc
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from sweep._executor import Executor
from sweep._pipeline import Failure, RunPipeline
from sweep._progress import Progress, ProgressState
from sweep._task import RunOutcome, RunTask

if TYPE_CHECKING:
    from storage import ResultStore

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


class TransitionError(RuntimeError):
    """A run or trial was moved between two states that do not follow each other.

    A bug in a controller, never bad input: raised (not asserted, so it holds under
    ``python -O``) with the run or trial and the transition, before any state changes.
    """

    def __init__(self, what: str, name: object, old: str, new: str) -> None:
        self.what, self.name, self.old, self.new = what, name, old, new
        super().__init__(f"{what} {name}: {old} -> {new} is not a valid transition")


class Controller(abc.ABC):
    """What a sweep's and a search's controller share.

    A stop (``request_stop``, or ``flushsweep cancel`` seen in the store) ends the
    session: in-flight work is dropped, what finished is committed, unfinished runs go
    back to pending and the sweep record is marked. ``run`` does that whatever
    happens, so the store is left consistent after an error or Ctrl-C too.

    Subclasses implement ``step`` (one round of named phases), ``finished``, ``state``,
    ``report`` and ``_commit``, and hook into the shutdown.
    """

    def __init__(
        self, *, store: "ResultStore", sweep: str, pipeline: RunPipeline, fail_fast: bool, cancel_check_s: float,
        progress: Progress | None, clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.sweep = sweep
        self.pipeline = pipeline
        self.progress = progress
        self._fail_fast = fail_fast
        self._cancel_check_s = cancel_check_s
        self._clock = clock
        self._stop: StopReason | None = None
        self._start = clock()
        self._last_cancel_check = clock()

    # --- public -----------------------------------------------------------------
    def request_stop(self, reason: StopReason = "interrupted") -> None:
        """Stop submitting; in-flight work is dropped and the sweep is marked ``reason``. Safe from a signal handler."""
        if self._stop is None:
            self._stop = reason

    @abc.abstractmethod
    def finished(self) -> bool:
        """Whether the session is over (a stop request ends it at once)."""

    @abc.abstractmethod
    def step(self) -> None:
        """One round of the controller's phases."""

    @abc.abstractmethod
    def state(self) -> ProgressState: ...

    @abc.abstractmethod
    def report(self) -> Any: ...

    def run(self) -> Any:
        """Step until ``finished``; always leaves the store consistent; returns the report.

        Raises:
            Whatever a step raised (e.g. StoreError), after the shutdown (the sweep marked interrupted).
        """
        try:
            self._begin()
            while not self.finished():
                self.step()
        except KeyboardInterrupt:  # no signal handler installed: treat Ctrl-C as a stop request
            self.request_stop("interrupted")
        except BaseException:
            self.request_stop("interrupted")
            with contextlib.suppress(Exception):  # the store may be what failed; the original error is the one to report
                self._shutdown()
            raise
        self._shutdown()
        return self.report()

    # --- shared phases ----------------------------------------------------------
    def _check_stop(self) -> None:
        now = self._clock()
        if self._stop is None and now - self._last_cancel_check >= self._cancel_check_s:
            self._last_cancel_check = now
            record = self.store.find_sweep(self.sweep)
            if record is not None and record.status == "cancelled":
                self.request_stop("cancelled")

    def _failed_for_good(self, failures: Sequence[Failure]) -> None:
        if failures and self._fail_fast:
            self.request_stop("failed")

    def _show(self) -> None:
        if self.progress is not None:
            self.progress.update(self.state())

    def _shutdown(self) -> None:
        """Drop in-flight work, commit what finished, hand unfinished runs back, mark the sweep."""
        self._dropped(self.pipeline.cancel())
        self._wind_down()
        self._commit(force=True)
        self._after_commit()
        self.pipeline.mark()
        if self._unfinished():
            self.store.requeue(self.sweep)  # running -> pending: the next session computes them
        if self._stop != "cancelled":  # a cancelled sweep stays as `flushsweep cancel` left it
            self.store.set_sweep_status(self.sweep, self._final_status())
        self.pipeline.close()
        if self.progress is not None:
            self.progress.update(self.state(), force=True)
            self.progress.close()

    # --- hooks ------------------------------------------------------------------
    def _begin(self) -> None:
        """Before the first step."""

    @abc.abstractmethod
    def _commit(self, *, force: bool) -> None:
        """Commit buffered results (``force``: whether or not a commit is due)."""

    def _dropped(self, tasks: list[RunTask]) -> None:
        """The shutdown gave up on these runs in flight."""

    def _wind_down(self) -> None:
        """At shutdown, after in-flight work is dropped and before the last commit."""

    def _after_commit(self) -> None:
        """At shutdown, after the last commit."""

    def _unfinished(self) -> bool:
        """Whether runs of this session are left to compute (they are handed back as pending)."""
        return False

    def _final_status(self) -> str:
        return self._stop or "done"


class SweepController(Controller):
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
        store: "ResultStore",
        sweep: str,
        executor: Executor,
        tasks: Sequence[RunTask],
        skipped: int = 0,
        options: RunOptions = RunOptions(),
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        pipeline = RunPipeline(
            store=store, sweep=sweep, executor=executor, max_attempts=options.max_attempts, commit_rows=options.commit_rows,
            commit_interval_s=options.commit_interval_s, mark_interval_s=options.mark_interval_s, clock=clock,
        )
        super().__init__(store=store, sweep=sweep, pipeline=pipeline, fail_fast=options.fail_fast,
                         cancel_check_s=options.cancel_check_s, progress=progress, clock=clock)
        self.executor = executor
        self.options = options
        self._runs = {t.run_id: _Run(t) for t in tasks}
        self._by_state: dict[RunState, set[str]] = {s: set() for s in _TRANSITIONS}
        self._by_state["queued"] = set(self._runs)
        self._queue: deque[str] = deque(self._runs)
        self._failures: dict[str, Failure] = {}
        self._skipped = skipped
        self._retried = 0
        self._run_time = 0.0
        self._per_run_s: float | None = None
        if progress is not None:
            progress.restart()

    # --- public -----------------------------------------------------------------
    def finished(self) -> bool:
        """A stop request ends the session at once (in-flight work is dropped); otherwise run out the queue."""
        if self._stop is not None:
            return True
        return not self._by_state["queued"] and not self.pipeline.in_flight and not self._by_state["buffered"]

    def step(self) -> None:
        """One round: look for a stop, fill the pipeline, take what finished, commit if due, show progress."""
        self._check_stop()
        if self._stop is None:
            self._submit()
        self._collect()
        self._commit(force=self._stop is not None or not self.pipeline.in_flight)
        self._show()

    def state(self) -> ProgressState:
        """Where the session is; a run counts as done once computed (its row is committed with others soon after)."""
        return ProgressState(
            total=len(self._runs) + self._skipped,
            skipped=self._skipped,
            done=len(self._by_state["done"]) + len(self._by_state["buffered"]),
            failed=len(self._by_state["failed"]),
            retried=self._retried,
            in_flight=len(self._by_state["in_flight"]),
        )

    def report(self) -> SweepReport:
        st = self.state()
        failures = tuple(self._failures[rid] for rid in self._runs if rid in self._failures)
        return SweepReport(
            sweep=self.sweep, status=self._final_status(), total=st.total, skipped=st.skipped, done=st.done,
            failed=st.failed, remaining=st.remaining, retried=st.retried, elapsed_s=self._clock() - self._start,
            run_time_s=self._run_time, failures=failures,
        )

    # --- phases -----------------------------------------------------------------
    def _submit(self) -> None:
        limit = self.options.max_in_flight or 2 * self.executor.workers
        batches: list[list[str]] = []
        while self._queue and self.pipeline.in_flight + len(batches) < limit:
            size = self._batch_size()
            batches.append([self._queue.popleft() for _ in range(min(size, len(self._queue)))])
        for batch in batches:
            for rid in batch:
                self._set_state(rid, "in_flight")
        self.pipeline.submit([[self._runs[rid].task for rid in batch] for batch in batches])

    def _collect(self) -> None:
        got = self.pipeline.collect(self.options.poll_s if self.pipeline.in_flight else 0.0)
        for outcome in got.done:
            self._on_success(outcome)
        for task in got.retry:
            self._retried += 1
            self._set_state(task.run_id, "queued")
            self._queue.append(task.run_id)
        for failure in got.failed:
            self._failures[failure.run_id] = failure
            self._set_state(failure.run_id, "failed")
        self._failed_for_good(got.failed)

    def _commit(self, *, force: bool) -> None:
        for rid in self.pipeline.commit(force=force):
            self._set_state(rid, "done")

    # --- events -----------------------------------------------------------------
    def _on_success(self, outcome: RunOutcome) -> None:
        self._run_time += outcome.wall_s
        self._per_run_s = outcome.wall_s if self._per_run_s is None else 0.8 * self._per_run_s + 0.2 * outcome.wall_s
        self._set_state(outcome.run_id, "buffered")

    # --- shutdown hooks ---------------------------------------------------------
    def _dropped(self, tasks: list[RunTask]) -> None:
        for task in tasks:
            self._set_state(task.run_id, "queued")

    def _unfinished(self) -> bool:
        return bool(self._by_state["queued"])

    def _final_status(self) -> str:
        if self._stop is not None:
            return self._stop
        return "failed" if self._by_state["failed"] else "done"

    # --- helpers ----------------------------------------------------------------
    def _set_state(self, run_id: str, new: RunState) -> None:
        run = self._runs[run_id]
        if new not in _TRANSITIONS[run.state]:
            raise TransitionError("run", run_id, run.state, new)
        self._by_state[run.state].remove(run_id)
        self._by_state[new].add(run_id)
        run.state = new

    def _batch_size(self) -> int:
        if self._per_run_s is None:
            return 1  # nothing measured yet: the first tasks are single runs
        size = math.ceil(self.options.min_task_s / max(self._per_run_s, 1e-6))
        share = math.ceil(len(self._queue) / max(1, self.executor.workers))  # keep every worker busy at the tail
        return max(1, min(size, self.options.max_batch, share))


__all__ = ["Controller", "Failure", "RunOptions", "SweepController", "SweepReport", "TransitionError"]
