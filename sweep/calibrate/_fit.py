"""The fit: Optuna proposes candidate profiles, the sweep machinery simulates every measured point under them.

State lives in the store, so a fit is resumable and its runs are ordinary runs:

- the Optuna study sits in the store's SQL database (``RDBStorage(store.db_url)``),
  named after the measurements' hash, the base profile and the search space;
- every simulation is a run of the store sweep of the same name (kind
  ``calibration``), identified like any run by config + profile digest, so a
  candidate evaluated before (by this fit, an earlier session or another fit)
  is read back, never recomputed;
- runs execute through ``SweepController`` on any ``Executor`` (Ray by default),
  each trial's runs in parallel.

A trial is asked, its runs computed and committed, then it is told. A session
that dies leaves at most the asked trials RUNNING; the next session evaluates
those first (their committed runs are not recomputed) and carries on.
Deterministic for a given seed, ``parallel_trials`` and sequence of sessions:
the sampler sees the same values in the same order whatever the cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from sweep._controller import RunOptions, SweepController
from sweep._executor import Completion, Executor
from sweep._service import compact_finished, stop_on_signals
from sweep.calibrate._measurements import FIGURES, CalibrationError, MeasurementSet
from sweep.calibrate._objective import Evaluation, evaluate
from sweep.calibrate._space import SearchSpace
from sweep.calibrate._task import CandidateTask, candidate_task
from workers import CostProfile

SAMPLERS = ("cmaes", "tpe")
#: Study user attributes that must match for a session to continue a study.
_IDENTITY = ("measurements_sha256", "space_key", "replicates")


@dataclass(frozen=True, slots=True)
class FitSettings:
    """How a fit searches.

    Args:
        trials: total trials of the study (a resumed fit runs only the missing ones).
        seed: sampler seed; default: the study's (0 for a new study).
        sampler: ``cmaes`` (default for >= 2 constants) or ``tpe``; default: the study's.
        replicates: simulation seeds per measured point (config seed, +1, ...), figures averaged.
        parallel_trials: trials asked (and simulated) together; part of what makes a fit reproducible.
        target_error: stop as soon as a trial's error is at or below this (0: run every trial).
        study: study name (default: derived from the measurements, base profile and search space).
        options: how runs execute (attempts, batching).
    """

    trials: int = 60
    seed: int | None = None
    sampler: str | None = None
    replicates: int = 1
    parallel_trials: int = 1
    target_error: float = 0.0
    study: str | None = None
    options: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise CalibrationError(f"--trials: must be >= 1, got {self.trials}")
        if self.replicates < 1:
            raise CalibrationError(f"--replicates: must be >= 1, got {self.replicates}")
        if self.parallel_trials < 1:
            raise CalibrationError(f"--parallel-trials: must be >= 1, got {self.parallel_trials}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise CalibrationError(f"--sampler: {self.sampler!r} is not one of {', '.join(SAMPLERS)}")


@dataclass(frozen=True, slots=True)
class FitResult:
    """How a fit (session) ended and what it found.

    ``status`` is ``done`` (trials run or target reached), ``interrupted``,
    ``cancelled`` (``flushsweep cancel``) or ``failed`` (a run failed for good).
    ``best`` is the best complete trial's evaluation (None before any),
    ``start`` the base values' (trial 0), when evaluated.
    """

    study: str
    status: str
    measurements: MeasurementSet
    space: SearchSpace
    best: Evaluation | None
    start: Evaluation | None
    best_trial: int | None
    trials: int
    failed_trials: int
    seed: int
    sampler: str
    replicates: int
    message: str = ""

    @property
    def error(self) -> float:
        return self.best.error if self.best is not None else math.inf


def default_study_name(measurements: MeasurementSet, space: SearchSpace, replicates: int = 1) -> str:
    """``calibrate-<csv hash>-<base>-<space hash>``: the same inputs continue the same study."""
    key = hashlib.sha256(f"{space.key()}|{replicates}".encode()).hexdigest()[:8]
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", space.base.name)[:40].strip("-") or "base"
    return f"calibrate-{measurements.sha256[:10]}-{base}-{key}"


def fit(
    store: Any,
    measurements: MeasurementSet,
    space: SearchSpace,
    executor: Executor | Callable[[], Executor],
    settings: FitSettings = FitSettings(),
    *,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Fit ``space``'s constants to ``measurements``; see the module docstring.

    Args:
        store: an open, writable ResultStore (its database holds the study).
        executor: an Executor (e.g. ``InProcessExecutor(batch=execute_candidate_batch)``), or a
            factory called only when something must be simulated (closed afterwards).
        log: where one line per trial goes (None: nowhere).

    Returns:
        The FitResult; judging it (``--max-error``) is the caller's business.

    Raises:
        CalibrationError: fewer points than constants; a named study that fits something else.

    Example:
        >>> from sweep.calibrate import SearchSpace, fit, parse_measurements, execute_candidate_batch
        >>> result = fit(store, parse_measurements(csv_text), SearchSpace.build(base, ["fault_ns"]),  # doctest: +SKIP
        ...              InProcessExecutor(batch=execute_candidate_batch), FitSettings(trials=20))
    """
    check_enough_points(measurements, space)
    return _Fit(store, measurements, space, executor, settings, log or (lambda line: None)).run()


def check_enough_points(measurements: MeasurementSet, space: SearchSpace) -> None:
    """Refuse a fit with fewer data points than constants.

    A data point is one fitted figure (weight > 0): each is one equation, and
    real, user and sys time of one run respond to different constants.

    Raises:
        CalibrationError: what to do about it.
    """
    if measurements.figure_count < len(space.bounds):
        raise CalibrationError(
            f"{measurements.source}: {measurements.figure_count} fitted figure(s) cannot determine {len(space.bounds)} "
            "constants; measure more figures or configurations, or fit fewer constants (--fit)"
        )


class _Fit:
    """One session of a fit: the study, the store sweep, and the executor once it is needed."""

    def __init__(self, store: Any, measurements: MeasurementSet, space: SearchSpace, executor: Any,
                 settings: FitSettings, log: Callable[[str], None]) -> None:
        self.store = store
        self.ms = measurements
        self.space = space
        self.settings = settings
        self.log = log
        self.name = settings.study or default_study_name(measurements, space, settings.replicates)
        self._executor_arg = executor
        self._executor: _Capture | None = None
        self._owns_executor = not isinstance(executor, Executor)
        self.seed = 0
        self.sampler_kind = "cmaes"
        self.message = ""
        self._storage: Any = None

    # --- session ------------------------------------------------------------------
    def run(self) -> FitResult:
        study = self._open_study()
        try:
            try:
                status = self._optimise(study)
            except KeyboardInterrupt:
                status = "interrupted"
            result = self._result(study, status)
        finally:
            if self._owns_executor and self._executor is not None:
                self._executor.inner.close()
            self._storage.engine.dispose()  # no idle connections left behind (PostgreSQL counts them)
        if status != "cancelled":  # a cancelled sweep stays cancelled, as `flushsweep cancel` left it
            self.store.set_sweep_status(self.name, {"done": "done", "failed": "failed"}.get(status, "interrupted"))
        if status == "done":
            compact_finished(self.store, self.name)  # one small file per batch of trials otherwise
        return result

    def _open_study(self) -> Any:
        import optuna

        if len(self.name) > 128:
            raise CalibrationError(f"--study: at most 128 characters, got {len(self.name)}")
        storage = self._storage = optuna.storages.RDBStorage(self.store.db_url, engine_kwargs=_engine_kwargs(self.store.db_url))
        identity = {"measurements_sha256": self.ms.sha256, "space_key": self.space.key(), "replicates": self.settings.replicates}
        try:
            attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(self.name)) or None
        except KeyError:
            attrs = None  # (an empty study, left by a session that died while creating it, is started afresh)
        if attrs is not None:
            differs = [k for k in _IDENTITY if attrs.get(k) != identity[k]]
            if differs:
                raise CalibrationError(
                    f"--study {self.name}: that study fits other inputs ({differs[0]} differs: it was made for "
                    f"{attrs.get('measurements', '?')} with base {attrs.get('base', '?')}); choose another --study name"
                )
        stored = attrs or {}
        self.seed = self.settings.seed if self.settings.seed is not None else int(stored.get("seed", 0))
        default_kind = "tpe" if len(self.space.bounds) == 1 else "cmaes"
        self.sampler_kind = self.settings.sampler or str(stored.get("sampler", default_kind))
        try:
            previous = len(storage.get_all_trials(storage.get_study_id_from_name(self.name), deepcopy=False))
        except KeyError:
            previous = 0
        study = optuna.create_study(
            study_name=self.name, storage=storage, sampler=self._sampler(previous), direction="minimize", load_if_exists=True
        )
        if attrs is None:
            if previous:
                raise CalibrationError(f"--study {self.name}: a study of that name exists but was not made by calibrate; choose another --study name")
            for k, v in {
                **identity, "seed": self.seed, "sampler": self.sampler_kind, "measurements": self.ms.source,
                "base": self.space.base.name, "constants": list(self.space.names),
            }.items():
                study.set_user_attr(k, v)
            study.enqueue_trial(self.space.start(), user_attrs={"start": True})
        self.store.begin_sweep(self.name, self._spec_text(), kind="calibration")
        self.store.set_sweep_status(self.name, "running")
        return study

    def _sampler(self, previous: int) -> Any:
        """The sampler for this session; ``previous`` trials exist already.

        Samplers restart their random stream when created, so a resumed session
        seeded like the first would propose the first session's random candidates
        again: its seed also depends on how many trials the study holds.
        """
        import optuna

        seed = self.seed if previous == 0 else int(hashlib.sha256(f"{self.seed}/{previous}".encode()).hexdigest()[:8], 16)
        tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if self.sampler_kind == "tpe" or len(self.space.bounds) == 1:  # CMA-ES needs >= 2 dimensions
            return tpe
        try:
            import cmaes  # noqa: F401 - CmaEsSampler imports it on first use; fail here with the fix
        except ImportError:
            raise CalibrationError("--sampler cmaes needs the cmaes package (pip install cmaes); or use --sampler tpe") from None
        return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=tpe)

    def _spec_text(self) -> str:
        """What the store records as this calibration's 'spec'."""
        return json.dumps({
            "name": self.name, "kind": "calibration",
            "measurements": {"path": self.ms.source, "sha256": self.ms.sha256, "rows": len(self.ms)},
            "base": {"name": self.space.base.name, "digest": self.space.base.digest()},
            "fit": {b.name: [b.low, b.high] for b in self.space.bounds},
            "replicates": self.settings.replicates,
        }, indent=2, sort_keys=True) + "\n"

    # --- the search loop ---------------------------------------------------------------
    def _optimise(self, study: Any) -> str:
        import optuna
        from optuna.trial import TrialState

        distributions = self.space.distributions()
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        # A session killed inside study.ask() can leave a trial without all its parameters: it
        # cannot be simulated, so it fails (and counts as a trial); the rest are finished.
        unusable = [t for t in stale if set(t.params) != set(distributions)]
        for t in unusable:
            study.tell(t.number, state=TrialState.FAIL)
        stale = [t for t in stale if t not in unusable]
        if stale:  # asked by a session that died before telling them
            self.log(f"{self.name}: finishing {len(stale)} trial(s) left running by an earlier session")
            study_id = self._storage.get_study_id_from_name(self.name)
            trial_ids = [self._storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in stale]
            status = self._run_trials(study, [optuna.trial.Trial(study, trial_id) for trial_id in trial_ids])
            if status != "ok":
                return status
        while True:
            finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if len(finished) >= self.settings.trials:
                return "done"
            record = self.store.find_sweep(self.name)
            if record is not None and record.status == "cancelled":  # `flushsweep cancel` between two batches
                return "cancelled"
            best = _best_value(study)
            if best is not None and best <= self.settings.target_error:
                self.message = f"stopped early: error {best:.2%} <= target {self.settings.target_error:.2%}"
                return "done"
            k = min(self.settings.parallel_trials, self.settings.trials - len(finished))
            asked = [study.ask(distributions) for _ in range(k)]
            status = self._run_trials(study, asked)
            if status != "ok":
                return status

    def _run_trials(self, study: Any, trials: Sequence[Any]) -> str:
        """Simulate and tell ``trials`` (Optuna Trials); ``ok`` or why the session must stop."""
        from optuna.trial import TrialState

        profiles = [self.space.candidate(t.params) for t in trials]
        for trial, profile in zip(trials, profiles):  # the runs' `profile` column: find them in the store
            trial.set_user_attr("profile", profile.name)
        figures, status, failure = self._simulate(profiles)
        if status in ("interrupted", "cancelled"):
            return status  # the trials stay RUNNING; the next session finishes them
        for number, profile, sims in zip((t.number for t in trials), profiles, figures):
            if sims is None:
                study.tell(number, state=TrialState.FAIL)
                continue
            ev = evaluate(profile, self.ms.points, sims)
            if math.isinf(ev.error):
                study.tell(number, state=TrialState.FAIL)
                self.log(f"trial #{number}: simulation crashed at {', '.join(ev.crashed)}")
                continue
            study.tell(number, ev.error)
            finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))
            self.log(f"trial #{number}: error {ev.error:.2%} (best {_best_value(study):.2%}; {finished} of {self.settings.trials} trials)")
        if status == "failed":
            self.message = f"a run failed for good: {failure}"
            return "failed"
        return "ok"

    # --- simulations ---------------------------------------------------------------------
    def _tasks(self, profile: CostProfile) -> list[list[CandidateTask]]:
        """Per measured point, one task per replicate (seeds config.seed, +1, ...)."""
        return [
            [candidate_task(p.config.replace(seed=p.config.seed + k), profile) for k in range(self.settings.replicates)]
            for p in self.ms.points
        ]

    def _simulate(self, profiles: Sequence[CostProfile]) -> tuple[list[list[dict[str, float] | None] | None], str, str]:
        """Figures per profile per point (None: crashed; a profile's entry is None if a run failed).

        Returns (figures, status, first failure): status ``ok``, ``failed``, ``interrupted`` or ``cancelled``.
        """
        from storage import NewRun

        plan = [self._tasks(p) for p in profiles]
        unique = {t.run_id: t for per_profile in plan for per_point in per_profile for t in per_point}
        self.store.add_runs(self.name, [NewRun(t.run_id, t.config) for t in unique.values()])
        self.store.requeue(self.name, include_failed=True)  # runs a dead session left running, or that failed before
        status_by_run = {r.run_id: r.status for r in self.store.runs(self.name)}
        todo = [t for rid, t in unique.items() if status_by_run.get(rid) != "done"]
        failures: dict[str, str] = {}
        status = "ok"
        if todo:
            report = self._execute(todo)
            failures = {f.run_id: f.summary for f in report.failures}
            if report.status in ("interrupted", "cancelled"):
                return [], report.status, ""
            if failures:
                status = "failed"
        rows = self._rows([rid for rid in unique if rid not in failures])
        out: list[list[dict[str, float] | None] | None] = []
        for per_profile in plan:
            if any(t.run_id in failures or t.run_id not in rows for per_point in per_profile for t in per_point):
                out.append(None)
                continue
            out.append([_mean_figures([rows[t.run_id] for t in per_point]) for per_point in per_profile])
        return out, status, next(iter(failures.values()), "")

    def _execute(self, tasks: list[CandidateTask]) -> Any:
        if self._executor is None:
            self._executor = _Capture(self._executor_arg() if self._owns_executor else self._executor_arg)
            self.log(f"{self.name}: simulating on {self._executor.describe()}")
        self.store.set_sweep_status(self.name, "running")
        controller = SweepController(store=self.store, sweep=self.name, executor=self._executor, tasks=tasks,
                                     options=self.settings.options)
        with stop_on_signals(controller):
            return controller.run()

    def _rows(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Result rows by run_id: those just computed from the executor, the others from the store."""
        captured = self._executor.take() if self._executor is not None else {}
        rows = {rid: captured[rid] for rid in run_ids if rid in captured}
        missing = [rid for rid in run_ids if rid not in rows]
        if missing:
            table = self.store.results({"run_id": missing})
            wanted = [c for c in ("run_id", "outcome", *FIGURES) if c in table.column_names]
            for row in table.select(wanted).to_pylist():
                rows.setdefault(row["run_id"], row)
        return rows

    # --- the outcome ---------------------------------------------------------------------
    def _result(self, study: Any, status: str) -> FitResult:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        best_trial = min(complete, key=lambda t: (t.value, t.number)) if complete else None
        start_params = self.space.start()
        start_trial = next((t for t in complete if t.user_attrs.get("start") or t.params == start_params), None)
        best = start = None
        if best_trial is not None:  # both trials are complete, so their runs are stored: nothing is computed here
            wanted = [t for t in (best_trial, start_trial) if t is not None]
            profiles = [self.space.candidate(t.params) for t in wanted]
            figures, _, _ = self._simulate(profiles)
            evals = [evaluate(p, self.ms.points, f) if f is not None else None for p, f in zip(profiles, figures)]
            best = evals[0] if evals else None
            start = evals[1] if len(evals) == 2 else None
        return FitResult(
            study=self.name, status=status, measurements=self.ms, space=self.space, best=best, start=start,
            best_trial=best_trial.number if best_trial is not None else None, trials=len(complete) + len(failed),
            failed_trials=len(failed), seed=self.seed, sampler=self.sampler_kind, replicates=self.settings.replicates,
            message=self.message,
        )


class _Capture(Executor):
    """Passes batches through to ``inner`` and keeps the rows of the runs that succeeded.

    The controller commits those rows to the store; keeping them here spares
    reading them back (a query over every result file) after each batch.
    """

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self._rows: dict[str, dict[str, Any]] = {}

    @property
    def workers(self) -> int:
        return self.inner.workers

    def submit(self, tasks: Sequence[Any]) -> int:
        return self.inner.submit(tasks)

    def wait(self, timeout: float) -> list[Completion]:
        done = self.inner.wait(timeout)
        for completion in done:
            self._rows.update(completion.rows_by_run())
        return done

    def take(self) -> dict[str, dict[str, Any]]:
        """The rows kept since the last call (then forgotten: memory stays bounded by one batch)."""
        rows, self._rows = self._rows, {}
        return rows

    def cancel(self) -> None:
        self.inner.cancel()

    def describe(self) -> str:
        return self.inner.describe()


def _best_value(study: Any) -> float | None:
    from optuna.trial import TrialState

    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return min(values) if values else None


def _mean_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Replicates averaged; None when any replicate crashed."""
    if any(r.get("outcome") != "ok" for r in rows):
        return None
    return {f: sum(float(r[f]) for r in rows) / len(rows) for f in FIGURES if all(r.get(f) is not None for r in rows)}


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite: wait for the store's own connection instead of failing with 'database is locked'."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


__all__ = ["SAMPLERS", "FitResult", "FitSettings", "check_enough_points", "default_study_name", "fit"]
