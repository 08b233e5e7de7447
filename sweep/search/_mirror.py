"""An in-memory copy of a study for the sampler to work on.

The sampler reads every trial of the study at each ask; on ``RDBStorage`` that is
several SQL round trips per ask, and Optuna's per-parameter writes add a dozen more.
Here the sampler runs on an Optuna study in ``InMemoryStorage`` holding a copy of the
database's trials: the driver writes each of its trials to both, and reloads the copy
when the database has trials it does not know (another driver's, or retries queued by a
recovery). A copy loaded in the study's order asks exactly what the database study would
have asked. What a sampler keeps at study level (NSGA-II's parent cache) stays in
memory: it is a cache the sampler rebuilds from the trials.

Trials are matched by their number in the database study (public, unlike trial ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from sweep.search._study_writer import constraint_attrs

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState


class StudyMirror:
    """The sampler's study: a copy of the database's trials, keyed by their database number.

    Args:
        sampler: the search's sampler (its state lives on across reloads).
        directions: the study's directions.
    """

    def __init__(self, sampler: "optuna.samplers.BaseSampler", directions: Sequence[str]) -> None:
        self.sampler = sampler
        self.directions = list(directions)
        self.study: "optuna.Study | None" = None
        self._storage: "optuna.storages.InMemoryStorage | None" = None
        self._study_id = -1
        self._local: dict[int, int] = {}  # database number -> local number
        self._states: dict[int, "TrialState"] = {}  # database number -> state as last known
        self._queued: list[int] = []  # database numbers loaded WAITING, in the order Optuna asks them

    @property
    def loaded(self) -> bool:
        return self.study is not None

    @property
    def next_number(self) -> int:
        """The number the database most likely gives the next trial (every trial it has is known here)."""
        return max(self._states, default=-1) + 1

    def load(self, trials: Iterable["FrozenTrial"]) -> None:
        """Replace the copy with ``trials`` (the database's, any order)."""
        import optuna
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        storage = self._storage = optuna.storages.InMemoryStorage()
        self._study_id = storage.create_new_study([StudyDirection[d.upper()] for d in self.directions])
        self.study = optuna.Study(study_name=storage.get_study_name_from_id(self._study_id), storage=storage, sampler=self.sampler)
        self._local, self._states = {}, {}
        ordered = sorted(trials, key=lambda t: t.number)
        for local_number, t in enumerate(ordered):
            storage.create_new_trial(self._study_id, template_trial=t)
            self._local[t.number] = local_number
            self._states[t.number] = t.state
        self._queued = [t.number for t in ordered if t.state == TrialState.WAITING]

    def stale(self, open_trials: Iterable["FrozenTrial"], newer: bool) -> bool:
        """Whether the database differs from this copy.

        Args:
            open_trials: the database's WAITING and RUNNING trials.
            newer: whether the database has a trial numbered ``next_number`` (one this copy lacks).
        """
        from optuna.trial import TrialState

        mine = {n: s for n, s in self._states.items() if s in (TrialState.WAITING, TrialState.RUNNING)}
        return newer or {t.number: t.state for t in open_trials} != mine

    def first_waiting(self) -> int | None:
        """The database number of the queued trial the next ask takes, or None."""
        from optuna.trial import TrialState

        while self._queued and self._states[self._queued[0]] != TrialState.WAITING:
            self._queued.pop(0)
        return self._queued[0] if self._queued else None

    def ask(self, distributions: Mapping[str, "BaseDistribution"]) -> "FrozenTrial":
        """The sampler's next trial (the first queued one, if any), with the parameters and attributes the sampler set."""
        assert self.study is not None and self._storage is not None
        trial = self.study.ask(fixed_distributions=dict(distributions))
        return self._storage.get_trial(self._storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number))

    def attach(self, local: "FrozenTrial", number: int) -> None:
        """``local`` (from ``ask``) is the database's trial ``number``, now running."""
        from optuna.trial import TrialState

        self._local[number] = local.number
        self._states[number] = TrialState.RUNNING

    def tell(self, number: int, state: "TrialState", values: Sequence[float] = (),
             constraints: Mapping[str, float] | None = None) -> None:
        """Finish the copy of trial ``number`` as the database's is finished (the sampler learns from it)."""
        assert self.study is not None and self._storage is not None
        local = self._local[number]
        local_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, local)
        for key, value in constraint_attrs(constraints or {}).items():
            self._storage.set_trial_system_attr(local_id, key, value)
        self.study.tell(local, list(values) or None, state=state)
        self._states[number] = state


__all__ = ["StudyMirror"]
