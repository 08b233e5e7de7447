"""SearchController: ask/tell with ``parallel`` trials in flight, one event per step, no batch barrier.

Each step: look for a stop, keep the in-flight trials alive (and recover those
of dead drivers), ask for trials until ``parallel`` are in flight, take the runs
that finished, and tell every trial whose runs are all in. A trial's runs that
are already stored are read, not simulated; the others go to the executor, one
task per run, so the runs of several trials share the workers. A trial's new
rows are committed to the store before the trial is told, so a told trial's
runs are always stored; a driver that dies leaves at most uncommitted rows
(simulated again on resume) and trials that the next driver re-queues.

Stopping, committing, recording failed runs and the shutdown are the sweep
controller's (``sweep._controller.Controller`` and its ``RunPipeline``).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Literal

from sweep._controller import Controller, TransitionError
from sweep._executor import Executor
from sweep._pipeline import RunPipeline
from sweep._progress import Progress, ProgressState
from sweep._spec import Impossible
from sweep._task import RunTask
from sweep.search._cache import RunCache
from sweep.search._optuna import BaseSearch, Proposal
from sweep.search._spec import SearchSpec
from sweep.search._trial import Evaluation, RunKey, TrialPlan, evaluate, impossible, plan_trial

if TYPE_CHECKING:
    from storage import NewRun, ResultStore

TrialStatus = Literal["running", "ready", "told"]

#: Reused runs linked to the search in one ``add_runs`` (unless ``commit_interval_s`` passes first).
LINK_BATCH = 1000

_TRANSITIONS: dict[TrialStatus, tuple[TrialStatus, ...]] = {
    "running": ("ready", "told"),
    "ready": ("told",),
    "told": (),
}


class TrialProgress(Progress):
    """The sweep progress display, counting trials instead of runs."""

    def render(self, state: ProgressState, elapsed: float) -> str:
        return super().render(state, elapsed).replace(" runs", " trials")


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How a search executes.

    Args:
        max_attempts: tries per run before it (and every trial that needs it) fails.
        fail_fast: stop the search (status ``failed``) at the first run that fails for good.
        poll_s: longest wait for a run; also how quickly a stop request is noticed.
        commit_interval_s: commit finished runs at least this often, even if no trial needs them yet.
        cancel_check_s: how often to look for ``flushsweep cancel`` in the store.
    """

    max_attempts: int = 3
    fail_fast: bool = False
    poll_s: float = 0.2
    commit_interval_s: float = 5.0
    cancel_check_s: float = 2.0


@dataclass(slots=True)
class _Trial:
    proposal: Proposal
    plan: TrialPlan
    waiting: set[str]
    status: TrialStatus = "running"
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class SearchReport:
    """How a session of a search ended, and what it cost.

    ``overhead_s`` splits the driver's own time: ``sampler`` (choosing a
    trial's parameters), ``study`` (every read and write of the study's
    database: new trials, results, heartbeats), ``store`` (run registration and
    commits), ``plan`` (run ids and scoring). All of it is time the driver's
    process spends, whether or not runs are simulating meanwhile.
    """

    search: str
    status: str
    told: Counter[str]
    seeded: int
    runs_simulated: int
    runs_reused: int
    runs_failed: int
    recovered: int
    elapsed_s: float
    simulation_s: float
    overhead_s: dict[str, float] = field(default_factory=dict)

    @property
    def trials(self) -> int:
        return sum(self.told.values())

    def overhead_per_trial_s(self) -> float:
        return sum(self.overhead_s.values()) / max(1, self.trials)

    def simulation_per_trial_s(self) -> float:
        return self.simulation_s / max(1, self.trials)


class SearchController(Controller):
    """Runs a search: trials from ``search``, runs on ``executor``, results into ``store``.

    Args:
        store: the ResultStore; the search's sweep record (kind "search") must exist.
        spec: the search spec.
        search: the strategy (``OptunaSearch``).
        executor: an Executor, or a factory called at the first run to simulate
            (a search whose runs are all stored never starts Ray).
        cache: finished runs' metrics (prefetched from the store).
        run_key: how run_ids are computed.
        options: SearchOptions.
        progress: where progress goes (None: nowhere).
        heartbeat_s: how often in-flight trials are marked alive (and dead drivers' trials looked for).
        until: stop asking once a told trial satisfies this (e.g. a target value reached);
            the trials in flight still finish.
    """

    def __init__(
        self,
        *,
        store: "ResultStore",
        spec: SearchSpec,
        search: BaseSearch,
        executor: Executor | Callable[[], Executor],
        cache: RunCache,
        run_key: RunKey,
        options: SearchOptions = SearchOptions(),
        progress: Progress | None = None,
        heartbeat_s: float = 10.0,
        until: Callable[[Evaluation], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        pipeline = RunPipeline(store=store, sweep=spec.name, executor=executor, max_attempts=options.max_attempts,
                               commit_interval_s=options.commit_interval_s, clock=clock)
        super().__init__(store=store, sweep=spec.name, pipeline=pipeline, fail_fast=options.fail_fast,
                         cancel_check_s=options.cancel_check_s, progress=progress, clock=clock)
        self.spec = spec
        self.search = search
        self.cache = cache
        self.run_key = run_key
        self.options = options
        self.heartbeat_s = heartbeat_s
        self.until = until
        self._reached = False
        self._trials: dict[int, _Trial] = {}
        self._waiters: dict[str, set[int]] = {}  # run being computed -> numbers of the trials waiting for it
        self._linked: set[str] = set()  # runs this session registered with the search
        self._unlinked: dict[str, "NewRun"] = {}  # stored runs the search reused, not linked to it yet
        self._unlinked_since: float | None = None
        self._told: Counter[str] = Counter()
        self._seeded = 0
        self._simulated = 0
        self._reused = 0
        self._runs_failed = 0
        self._recovered = 0
        self._simulation_s = 0.0
        self._timers: Counter[str] = Counter()
        self._endgame = False
        self._last_beat = clock()
        self._counted = 0

    # --- public -----------------------------------------------------------------
    def finished(self) -> bool:
        """Stopped, or past the budget with nothing of the study left queued or running."""
        if self._stop is not None:
            return True
        return not self._trials and self._endgame and self._nothing_left()

    def step(self) -> None:
        """One round: stop?, heartbeat, ask, collect finished runs, tell ready trials, show progress."""
        self._check_stop()
        self._keep_alive()
        if self._stop is None:
            self._ask()
        self._collect()
        self._finish()
        self._show()

    def report(self) -> SearchReport:
        overhead = Counter(self._timers)
        overhead["store"] += self.pipeline.store_s
        written = min(self.search.storage_s(), overhead["sampler"])  # ask's study writes count as study time
        overhead["sampler"] -= written
        overhead["study"] += written
        return SearchReport(
            search=self.spec.name, status=self._stop or "done", told=Counter(self._told), seeded=self._seeded,
            runs_simulated=self._simulated, runs_reused=self._reused, runs_failed=self._runs_failed,
            recovered=self._recovered, elapsed_s=self._clock() - self._start, simulation_s=self._simulation_s,
            overhead_s=dict(overhead),
        )

    def state(self) -> ProgressState:
        done = self._told["complete"] + self._told["infeasible"]
        failed = self._told["failed"] + self._told["impossible"]
        return ProgressState(
            total=max(self.spec.trials, self._counted + len(self._trials)), skipped=self._counted - done - failed,
            done=done, failed=failed, retried=self._recovered, in_flight=len(self._trials),
        )

    # --- phases -----------------------------------------------------------------
    def _begin(self) -> None:
        with self._timed("study"):
            self._counted = self.search.counted()

    def _keep_alive(self) -> None:
        now = self._clock()
        if now - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = now
        with self._timed("study"):
            self.search.keep_alive([t.proposal for t in self._trials.values()])
            self._recovered += self.search.recover(self._trials)

    def _ask(self) -> None:
        fresh: list[_Trial] = []
        while len(self._trials) < self.spec.parallel:
            in_flight = sum(1 for t in self._trials.values() if t.proposal.seeded_from is None)
            if self._reached:
                self._endgame = True
                break
            if self._counted + in_flight >= self.spec.trials:
                self._endgame = True
                with self._timed("study"):
                    if not self.search.waiting():  # seeds and retries are asked even past the budget
                        break
            with self._timed("sampler"):
                proposal = self.search.ask()
            trial = self._start_trial(proposal)
            if trial is not None:
                fresh.append(trial)
        self._submit(fresh)

    def _collect(self) -> None:
        if not self.pipeline.in_flight:
            return
        timeout = 0.0 if any(t.status == "ready" for t in self._trials.values()) else self.options.poll_s
        got = self.pipeline.collect(timeout)
        for table in got.tables:
            self.cache.add_table(table)
        for outcome in got.done:
            self._simulated += 1
            for number in self._waiters.pop(outcome.run_id, ()):
                trial = self._trials[number]
                trial.waiting.discard(outcome.run_id)
                if not trial.waiting and trial.status == "running":
                    self._set_status(trial, "ready")
        if got.retry:
            self.pipeline.submit([[task] for task in got.retry])
        for failure in got.failed:
            self._runs_failed += 1
            for number in self._waiters.pop(failure.run_id, ()):
                trial = self._trials[number]
                if trial.failure is None:
                    trial.failure = f"run {failure.run_id} failed {failure.attempts} times: {failure.summary}"
                if trial.status == "running":
                    self._set_status(trial, "ready")
        self._failed_for_good(got.failed)

    def _finish(self) -> None:
        ready = [t for t in self._trials.values() if t.status == "ready"]
        needed = any(t.failure is None and self.pipeline.buffered.intersection(t.plan.run_ids) for t in ready)
        self._commit(force=needed)  # a trial is told only once its runs are stored
        for trial in ready:
            if trial.failure is not None:
                evaluation = Evaluation("failed", error=trial.failure)
            else:
                with self._timed("plan"):
                    evaluation = evaluate(self.spec, trial.plan, self.cache.rows)
                self._simulation_s += sum(float(self.cache.rows[r].get("engine_wall_s") or 0.0) for r in trial.plan.run_ids)
            self._tell(trial, evaluation)

    def _commit(self, *, force: bool) -> None:
        self.pipeline.commit(force=force)

    # --- trials -----------------------------------------------------------------
    def _start_trial(self, proposal: Proposal) -> _Trial | None:
        """Plan the trial's runs; returns it if it must wait for runs, None if it was told at once."""
        try:
            with self._timed("plan"):
                plan = plan_trial(self.spec, proposal.params, self.run_key)
        except Impossible as exc:
            with self._timed("study"):
                self.search.tell(proposal, impossible(exc))
            self._count(proposal, "impossible")
            return None
        with self._timed("study"):
            proposal = self.search.started(proposal, plan)
        assert proposal.number is not None  # started records the trial
        waiting = {rid for rid in plan.run_ids if rid not in self.cache}
        self._reused += len(plan.run_ids) - len(waiting)
        trial = _Trial(proposal, plan, waiting, "running" if waiting else "ready")
        self._trials[proposal.number] = trial
        return trial

    def _tell(self, trial: _Trial, evaluation: Evaluation) -> None:
        with self._timed("study"):
            self.search.tell(trial.proposal, evaluation)
        self._set_status(trial, "told")
        number = trial.proposal.number
        del self._trials[number]  # type: ignore[arg-type]
        for rid in trial.waiting:  # a failed trial stops waiting; its other runs still finish and are stored
            self._waiters.get(rid, set()).discard(number)  # type: ignore[arg-type]
        if self.until is not None and trial.proposal.seeded_from is None and self.until(evaluation):
            self._reached = True
        kind = evaluation.state
        if kind == "complete" and not evaluation.feasible:
            kind = "infeasible"
        self._count(trial.proposal, kind)

    def _count(self, proposal: Proposal, kind: str) -> None:
        if proposal.seeded_from is not None:
            self._seeded += 1
            return
        self._told[kind] += 1
        self._counted += 1

    def _nothing_left(self) -> bool:
        """Past the budget: wait for queued trials and for trials another (or a dead) driver holds."""
        if self._reached:
            return True
        with self._timed("study"):
            if self.search.waiting():
                return False
            if self.search.running_elsewhere(self._trials):
                self._counted = self.search.counted()
                time.sleep(min(self.options.poll_s, 1.0))
                self._keep_alive()
                return False
        return True

    # --- runs -------------------------------------------------------------------
    def _submit(self, trials: list[_Trial]) -> None:
        """Register the new trials' runs with the store and send the ones nobody is computing yet.

        Runs to simulate are registered at once (their rows are committed under
        the search). Runs already stored are only linked to the search, in
        batches (``_link``): a link lost with a killed driver is restored by
        the next session (``relink``).
        """
        if not trials:
            return
        from storage import NewRun

        now: dict[str, NewRun] = {}
        tasks: list[RunTask] = []
        for trial in trials:
            for r in trial.plan.runs:
                if r.run_id not in self._linked:
                    pending = now if r.run_id in trial.waiting else self._unlinked
                    pending.setdefault(r.run_id, NewRun(r.run_id, r.config.to_dict(), r.baseline_run_id))
                if r.run_id not in trial.waiting:
                    continue
                waiters = self._waiters.get(r.run_id)
                if waiters is None:
                    waiters = self._waiters[r.run_id] = set()
                    tasks.append(RunTask(r.run_id, r.config.to_dict(), r.baseline_run_id))
                waiters.add(trial.proposal.number)  # type: ignore[arg-type]
        if now:
            with self._timed("store"):
                self.store.add_runs(self.spec.name, list(now.values()))
            self._linked.update(now)
        self._link()
        self.pipeline.submit([[task] for task in tasks])  # one task per run: the runs of several trials share the workers

    def _link(self, *, force: bool = False) -> None:
        """Link the stored runs the search reused, once enough wait or the oldest waited ``commit_interval_s``."""
        if not self._unlinked:
            self._unlinked_since = None
            return
        now = self._clock()
        if self._unlinked_since is None:
            self._unlinked_since = now
        if not (force or len(self._unlinked) >= LINK_BATCH or now - self._unlinked_since >= self.options.commit_interval_s):
            return
        runs, self._unlinked, self._unlinked_since = self._unlinked, {}, None
        with self._timed("store"):
            self.store.add_runs(self.spec.name, list(runs.values()))
        self._linked.update(runs)

    # --- shutdown hooks ---------------------------------------------------------
    def _wind_down(self) -> None:
        self._finish()  # trials whose runs are all in (or failed for good) are told, not re-queued

    def _after_commit(self) -> None:
        self._link(force=True)
        for trial in list(self._trials.values()):
            with self._timed("study"):
                self.search.abandon(trial.proposal, self._stop or "interrupted")
            del self._trials[trial.proposal.number]  # type: ignore[arg-type]
        with self._timed("study"):
            self.search.flush()

    def _unfinished(self) -> bool:
        return bool(self._waiters)

    # --- helpers ----------------------------------------------------------------
    def _set_status(self, trial: _Trial, new: TrialStatus) -> None:
        if new not in _TRANSITIONS[trial.status]:
            raise TransitionError("trial", trial.proposal.number, trial.status, new)
        trial.status = new

    @contextlib.contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._timers[what] += time.perf_counter() - t0


__all__ = ["SearchController", "SearchOptions", "SearchReport", "TrialProgress"]
