"""The search strategy: ``BaseSearch`` (what the driver needs) and its Optuna implementation.

The study lives in the store's SQL database (Optuna ``RDBStorage`` on
``store.db_url``), so ``optuna-dashboard <db-url>`` shows it and a search
resumes by name. Trials are driven by ask/tell; a driver keeps a heartbeat on
each trial it has in flight, and a trial whose driver died (heartbeat older than
the grace period) is failed and re-queued with the same parameters, so no trial
stays RUNNING once a driver is started again. The retry's runs are stored, so it
is told from the store without simulating them.

The sampler works on an in-memory copy of the study (``_mirror``); the database gets
each trial through Optuna's public storage API (``_study_writer``): created with its
runs in one template, finished with its result.

User attributes of a trial (visible in the dashboard):
``runs`` ({"pv": [run_id, ...], "native": [...]}, by replicate; written when the
trial starts), ``outcome``, ``error`` (why it failed or is impossible),
``seeded_from`` (a sweep whose results it was fed from), ``stopped`` (the driver
stopped while it ran; a retry was queued). Constraints are Optuna's own
(``trial.constraints``; feasible when all are <= 0).
"""

from __future__ import annotations

import abc
import contextlib
import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from sweep.search._mirror import StudyMirror
from sweep.search._spec import SAMPLERS, SearchSpec
from sweep.search._study_writer import Finish, NewTrial, StudyWriter
from sweep.search._trial import Evaluation, TrialPlan

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: Times a trial left behind by a dead driver is re-queued before it is given up.
MAX_RETRIES = 3


@dataclass(frozen=True, slots=True)
class Proposal:
    """A configuration to evaluate: the trial's number and parameters (``handle`` is the strategy's own).

    ``number`` is None until the trial is recorded in the study (``BaseSearch.started``).
    """

    number: int | None
    params: Mapping[str, Any]
    seeded_from: str | None = None
    handle: Any = None


class BaseSearch(abc.ABC):
    """Proposes configurations and learns from their scores; never runs or stores a run.

    Contract: every proposal ``ask`` returns is either told at once (``tell``, e.g.
    impossible parameters) or ``started`` and then finished exactly once, by ``tell``
    or ``abandon``. ``counted`` is what the trial budget is measured against:
    finished trials that were evaluated (seeded ones excluded). The hooks default to
    doing nothing.
    """

    @abc.abstractmethod
    def ask(self) -> Proposal:
        """The next configuration (trials queued by ``enqueue`` or a retry come first)."""

    @abc.abstractmethod
    def tell(self, proposal: Proposal, evaluation: Evaluation) -> None:
        """Record a finished trial: complete, failed, or impossible."""

    @abc.abstractmethod
    def counted(self) -> int:
        """Trials evaluated so far by any driver (complete, failed or impossible; not seeded)."""

    def waiting(self) -> int:
        """Trials queued but not yet asked (seeds and retries)."""
        return 0

    def running_elsewhere(self, mine: Iterable[int]) -> int:
        """Trials in flight that are not in ``mine`` (another driver's, or a dead one's not yet detected)."""
        return 0

    def started(self, proposal: Proposal, plan: TrialPlan) -> Proposal:
        """The trial's runs are known: record the trial with them; returns the proposal as recorded (its number set)."""
        return proposal

    def keep_alive(self, proposals: Sequence[Proposal]) -> None:
        """The driver is alive and still evaluating these."""

    def recover(self, mine: Iterable[int] = ()) -> int:
        """Fail and re-queue trials whose driver died; returns how many."""
        return 0

    def enqueue(self, params: Sequence[Mapping[str, Any]], *, seeded_from: str) -> int:
        """Queue configurations to be asked first; returns how many were new to the study."""
        return 0

    def abandon(self, proposal: Proposal, reason: str) -> None:
        """The driver stops before ``proposal`` is evaluated."""

    def finished_runs(self) -> list[tuple[Mapping[str, Any], list[str]]]:
        """Parameters and recorded run_ids of every finished trial that recorded its runs."""
        return []

    def storage_s(self) -> float:
        """Seconds ``ask`` spent in the study's storage (claiming queued trials: study time, not sampler time)."""
        return 0.0

    def flush(self) -> None:
        """Write anything kept back (the driver calls it before it stops)."""

    def close(self) -> None:
        """Release connections."""


def make_sampler(spec: SearchSpec) -> "optuna.samplers.BaseSampler":
    """The spec's sampler, seeded; TPE uses the constant liar so parallel trials spread out.

    Raises:
        SpecError: a sampler option of the wrong type or value (``file:line: sampler.key: ...``).
    """
    import optuna

    name, options = spec.sampler.name, dict(spec.sampler.options)
    cls = getattr(optuna.samplers, SAMPLERS[name])
    if name == "tpe":
        options.setdefault("constant_liar", True)
    args: dict[str, Any] = {"seed": spec.seed, **options}
    if name == "grid":
        args["search_space"] = spec.space.grid()
        cls = _ask_tell_grid(cls)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**args)
    except (TypeError, ValueError) as exc:
        key = next((k for k in options if k in str(exc)), None)
        path = ("sampler", key) if key else ("sampler",)
        raise spec.error(path, f"{SAMPLERS[name]} refused it: {str(exc).splitlines()[0]}") from None


def _ask_tell_grid(grid_sampler: type) -> type:
    """GridSampler without its end-of-grid ``study.stop()``, which Optuna allows only inside ``optimize``;
    the driver stops by its trial budget instead (capped to the grid's size)."""

    class AskTellGridSampler(grid_sampler):  # type: ignore[misc, valid-type]
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return AskTellGridSampler


class OptunaSearch(BaseSearch):
    """``BaseSearch`` on an Optuna study named after the spec, in the database at ``url``.

    Args:
        spec: the search spec (study name, objectives, space, sampler).
        url: SQLAlchemy URL of the database (the store's ``db_url``).
        heartbeat_s: how often in-flight trials are marked alive; a trial not
            marked for three times this long belongs to a dead driver.
        sampler: overrides the spec's sampler (tests, benchmarks).

    Raises:
        SpecError: the study exists with other objectives or directions.

    Example:
        >>> search = OptunaSearch(spec, url=store.db_url)                           # doctest: +SKIP
        >>> p = search.ask(); p = search.started(p, plan); search.tell(p, evaluation)  # doctest: +SKIP
    """

    def __init__(self, spec: SearchSpec, *, url: str, heartbeat_s: int = 10, sampler: Any = None) -> None:
        import optuna

        self.spec = spec
        self.heartbeat_s = int(heartbeat_s)
        self.grace_s = 3 * self.heartbeat_s
        with _quiet():
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        self.storage = self._open_storage(url)
        self.sampler = sampler or make_sampler(spec)
        self.study = optuna.create_study(
            study_name=spec.name, storage=self.storage, sampler=self.sampler,
            directions=spec.directions, load_if_exists=True,
        )
        self._check_objectives()
        self._distributions = spec.space.distributions()
        self._writer = StudyWriter(self.storage, self.storage.get_study_id_from_name(spec.name))
        self._mirror = StudyMirror(self.sampler, spec.directions)
        self._mirror_checked = False  # False: compare the copy with the database before the next ask
        self._write_s = 0.0
        self._unwritten: dict[int, dict[str, Any]] = {}  # trial_id -> user attributes to write with the result
        self._silent_since: dict[int, float] = {}  # number -> when first seen running elsewhere
        self._revived: set[int] = set()  # numbers given a heartbeat because they had none (``_revive_silent``)

    def _open_storage(self, url: str) -> Any:
        """Optuna's RDBStorage; a second try when another process created Optuna's tables at the same moment."""
        import optuna
        import sqlalchemy.exc

        for attempt in range(3):
            try:
                with _quiet():
                    storage = optuna.storages.RDBStorage(
                        url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=self.heartbeat_s,
                        grace_period=self.grace_s, heartbeat_stale_trial_callback=self._retry,
                    )
                if url.startswith("sqlite"):
                    _relax_sqlite_sync(storage.engine)
                return storage
            except sqlalchemy.exc.IntegrityError:  # both stamped Optuna's schema version: the other one won
                if attempt == 2:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def _check_objectives(self) -> None:
        stored = [d.name.lower() for d in self.study.directions]
        if stored != self.spec.directions:
            raise self.spec.error(
                ("objectives",),
                f"study {self.spec.name!r} was created with directions {stored}, the spec asks for "
                f"{self.spec.directions}; give the search a new name to change its objectives",
            )
        names = self.study.metric_names
        if names is None:
            with _quiet():
                self.study.set_metric_names(self.spec.objective_names)
        elif list(names) != self.spec.objective_names:
            raise self.spec.error(
                ("objectives",),
                f"study {self.spec.name!r} optimises {list(names)}, the spec {self.spec.objective_names}; "
                "give the search a new name to change its objectives",
            )

    # --- BaseSearch ------------------------------------------------------------------
    def ask(self) -> Proposal:
        """Sample on the in-memory copy; a new trial reaches the database with its runs (``started``).

        A queued trial (seed or retry) is claimed in the database at once, so two drivers
        never both take it; one another driver took first is skipped.
        """
        if not self._mirror_checked:
            self._refresh()
        while True:
            queued = self._mirror.first_waiting()
            local = self._mirror.ask(self._distributions)  # takes the queued trial, if any
            seeded = local.user_attrs.get("seeded_from")
            if queued is None:
                return Proposal(None, dict(local.params), seeded, _Pending(local))
            with self._writing():
                trial_id = self._writer.claim(queued)
            self._mirror.attach(local, queued)
            if trial_id is not None:
                return Proposal(queued, dict(local.params), seeded, trial_id)
            # another driver took it (it is running there now): ask again

    def started(self, proposal: Proposal, plan: TrialPlan) -> Proposal:
        """Record a new trial RUNNING with its runs (one template); a claimed one gets its runs with its result."""
        runs = {"runs": plan.run_map()}
        if not isinstance(proposal.handle, _Pending):
            self._unwritten[proposal.handle] = runs
            return proposal
        local = proposal.handle.local
        trial_id, number = self._writer.create(_new_trial(local, runs), number_hint=self._mirror.next_number)
        self._mirror.attach(local, number)
        return dataclasses.replace(proposal, number=number, handle=trial_id)

    def tell(self, proposal: Proposal, evaluation: Evaluation) -> None:
        """Record the trial, in the sampler's copy and in the database.

        If another driver meanwhile failed it as stale (this one stalled past the
        grace period), its retry is already queued and this result is dropped.
        """
        from optuna.trial import TrialState

        attrs = self._unwritten.pop(proposal.handle, {}) if isinstance(proposal.handle, int) else {}
        if evaluation.outcome:
            attrs["outcome"] = evaluation.outcome
        if evaluation.error:
            attrs["error"] = evaluation.error
        if evaluation.state == "complete":
            state, values = TrialState.COMPLETE, tuple(evaluation.values)
        else:
            state, values = (TrialState.PRUNED if evaluation.state == "impossible" else TrialState.FAIL), ()
        constraints = dict(evaluation.constraints)
        if isinstance(proposal.handle, _Pending):  # told as soon as asked (impossible parameters): one template
            local = proposal.handle.local
            _, number = self._writer.create_finished(_new_trial(local, attrs), state, values=values, constraints=constraints,
                                                     number_hint=self._mirror.next_number)
            self._mirror.attach(local, number)
            self._mirror.tell(number, state, values, constraints)
            return
        assert proposal.number is not None
        self._mirror.tell(proposal.number, state, values, constraints)
        if not self._writer.finish(Finish(proposal.handle, state, values, attrs, constraints)):
            self._mirror_checked = False  # failed as stale elsewhere: the copy reloads before the next ask

    def storage_s(self) -> float:
        return self._write_s

    def counted(self) -> int:
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        return sum(
            1 for t in done
            if "seeded_from" not in t.user_attrs and (t.state == TrialState.COMPLETE or "error" in t.user_attrs)
        )

    def finished_runs(self) -> list[tuple[Mapping[str, Any], list[str]]]:
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
        return [(t.params, [*t.user_attrs["runs"]["pv"], *t.user_attrs["runs"]["native"]]) for t in done if "runs" in t.user_attrs]

    def waiting(self) -> int:
        from optuna.trial import TrialState

        return sum(1 for t in self._writer.open_trials() if t.state == TrialState.WAITING)

    def running_elsewhere(self, mine: Iterable[int]) -> int:
        return len(_running(self._writer.open_trials()) - set(mine))

    def keep_alive(self, proposals: Sequence[Proposal]) -> None:
        self._writer.heartbeat([p.handle for p in proposals])
        for p in proposals:
            if p.handle in self._unwritten:
                self._writer.set_user_attrs(p.handle, self._unwritten.pop(p.handle))

    def recover(self, mine: Iterable[int] = ()) -> int:
        """Fail and re-queue stale trials (Optuna's heartbeat check); then bring the sampler's copy up to date.

        Optuna's check skips a trial that never had a heartbeat (its driver died between
        creating it and marking it alive); ``_revive_silent`` gives such a trial one, so
        it goes stale a grace period later.
        """
        import optuna

        mine = set(mine)
        open_trials = self._writer.open_trials()
        before = _running(open_trials) - mine
        if before:
            with _quiet():
                optuna.storages.fail_stale_trials(self.study)
            open_trials = self._writer.open_trials()
            self._revive_silent(_running(open_trials) - mine)
        self._refresh(open_trials)
        return len(before - _running(open_trials))

    def _revive_silent(self, elsewhere: set[int]) -> None:
        """Record a heartbeat, once, for a trial running elsewhere for two grace periods without going stale.

        Such a trial either has a live driver (whose own heartbeats it already gets:
        one more changes nothing) or never had a heartbeat, which Optuna's check cannot
        see; given one now, it is failed as stale once the grace period passes.
        """
        now = time.monotonic()
        self._silent_since = {n: self._silent_since.get(n, now) for n in elsewhere}
        for number, since in self._silent_since.items():
            if number not in self._revived and now - since >= 2 * self.grace_s:
                self._revived.add(number)
                with contextlib.suppress(KeyError):
                    self._writer.heartbeat([self.storage.get_trial_id_from_study_id_trial_number(self._writer.study_id, number)])

    def _refresh(self, open_trials: Sequence["FrozenTrial"] | None = None) -> None:
        """Reload the sampler's copy if the database has trials (or states) it lacks."""
        if open_trials is None:
            open_trials = self._writer.open_trials()
        newer = self._writer.has_trial(self._mirror.next_number)
        if not self._mirror.loaded or self._mirror.stale(open_trials, newer):
            self._mirror.load(self.study.get_trials(deepcopy=False))
        self._mirror_checked = True

    def enqueue(self, params: Sequence[Mapping[str, Any]], *, seeded_from: str) -> int:
        """Queue each configuration once: one already in the study (any state) is skipped.

        A queued trial carries its parameters, as Optuna's own retries do, so any reader
        of the study sees which configuration waits.
        """
        import optuna
        from optuna.trial import TrialState

        known = {_params_key(t.params) for t in self.study.get_trials(deepcopy=False)}
        added = 0
        for p in params:
            key = _params_key(p)
            if key in known:
                continue
            known.add(key)
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=dict(p), distributions={k: self._distributions[k] for k in p},
                user_attrs={"seeded_from": seeded_from},
            ))
            added += 1
        self._mirror_checked = False
        return added

    def abandon(self, proposal: Proposal, reason: str) -> None:
        """Fail the trial (it was not evaluated) and queue a retry with the same parameters."""
        from optuna.trial import TrialState

        attrs = {**self._unwritten.pop(proposal.handle, {}), "stopped": reason}
        assert proposal.number is not None
        self._mirror.tell(proposal.number, TrialState.FAIL)
        if not self._writer.finish(Finish(proposal.handle, TrialState.FAIL, (), attrs)):
            return  # failed as stale by another driver meanwhile (which queued the retry)
        retry = copy.deepcopy(self.storage.get_trial(proposal.handle))
        retry.user_attrs.pop("stopped", None)  # the retry is a fresh attempt; only the failed trial says why
        self._retry(self.study, retry)
        self._mirror_checked = False

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._write_s += time.perf_counter() - t0

    def close(self) -> None:
        self.storage.remove_session()
        self.storage.engine.dispose()


@dataclass(frozen=True, slots=True)
class _Pending:
    """The handle of a proposal not in the study yet: the mirror's trial (its parameters are chosen)."""

    local: "FrozenTrial"


def _new_trial(local: "FrozenTrial", user_attrs: Mapping[str, Any]) -> NewTrial:
    return NewTrial(local.params, local.distributions, local.system_attrs, user_attrs)


def _running(trials: Iterable["FrozenTrial"]) -> set[int]:
    from optuna.trial import TrialState

    return {t.number for t in trials if t.state == TrialState.RUNNING}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's experimental and heartbeat notices: features this module uses on purpose."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
        yield


def _params_key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in params.items()))


def _relax_sqlite_sync(engine: Any) -> None:
    """``synchronous=NORMAL`` on Optuna's SQLite connections, as the store uses on its own.

    The store keeps the file in WAL mode, where NORMAL loses nothing when a process
    dies (only an OS crash can drop the last commits); FULL would fsync each of
    the ~15 small transactions Optuna makes per trial.
    """
    import sqlalchemy

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while Optuna created its tables get the pragma too


def _engine_kwargs(url: str) -> dict[str, Any]:
    """Wait for a busy SQLite file (the store writes to it too); fail fast on an unreachable server."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


__all__ = ["BaseSearch", "MAX_RETRIES", "OptunaSearch", "Proposal", "make_sampler"]
