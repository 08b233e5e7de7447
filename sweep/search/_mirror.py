"""An in-memory copy of a study for the sampler to work on.

The sampler reads every trial of the study at each ask; on ``RDBStorage`` that
is several SQL round trips per ask, and Optuna's per-parameter writes add a
dozen more. Here the sampler runs on an Optuna study in ``InMemoryStorage``
holding a copy of the database's trials: the driver writes each of its trials
to both, and reloads the copy when the database has trials it does not know
(another driver's, or retries queued by a recovery). A copy loaded in the
study's order asks exactly what the database study would have asked. What a
sampler keeps at study level (NSGA-II's parent cache) stays in memory: it is a
cache the sampler rebuilds from the trials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from sweep.search._study_writer import TrialRow, constraint_key

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState


class StudyMirror:
    """The sampler's study: a copy of the database's trials, keyed by their database ``trial_id``.

    Args:
        sampler: the search's sampler (its state lives on across reloads).
        directions: the study's directions.
    """

    def __init__(self, sampler: "optuna.samplers.BaseSampler", directions: Sequence[str]) -> None:
        self.sampler = sampler
        self.directions = list(directions)
        self.study: "optuna.Study | None" = None
        self._storage: Any = None
        self._local: dict[int, tuple[int, int]] = {}  # database trial_id -> (local trial_id, local number)
        self._states: dict[int, "TrialState"] = {}  # database trial_id -> state as last known
        self._numbers: dict[int, int] = {}  # database trial_id -> database trial number
        self._queued: list[int] = []  # database trial_ids loaded WAITING, in the order Optuna asks them

    @property
    def loaded(self) -> bool:
        return self.study is not None

    def load(self, trials: Iterable["FrozenTrial"]) -> None:
        """Replace the copy with ``trials`` (the database's, any order)."""
        import optuna
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        storage = self._storage = optuna.storages.InMemoryStorage()
        study_id = storage.create_new_study([StudyDirection[d.upper()] for d in self.directions])
        self.study = optuna.Study(study_name=storage.get_study_name_from_id(study_id), storage=storage, sampler=self.sampler)
        self._local, self._states, self._numbers = {}, {}, {}
        ordered = sorted(trials, key=lambda t: t.number)
        for t in ordered:
            local = storage.get_trial(storage.create_new_trial(study_id, template_trial=t))
            self.attach(local, t._trial_id, t.number, t.state)
        self._queued = [t._trial_id for t in ordered if t.state == TrialState.WAITING]

    def stale(self, rows: Iterable[TrialRow]) -> bool:
        """Whether the database has trials, or states, this copy does not."""
        rows = list(rows)
        return len(rows) != len(self._states) or any(self._states.get(r.trial_id) != r.state for r in rows)

    def first_waiting(self) -> int | None:
        """The database id of the queued trial the next ask takes, or None."""
        from optuna.trial import TrialState

        while self._queued and self._states[self._queued[0]] != TrialState.WAITING:
            self._queued.pop(0)
        return self._queued[0] if self._queued else None

    def ask(self, distributions: Mapping[str, "BaseDistribution"]) -> "FrozenTrial":
        """The sampler's next trial (the first queued one, if any): its parameters and the attributes the sampler set."""
        assert self.study is not None
        trial = self.study.ask(fixed_distributions=dict(distributions))
        return self._storage.get_trial(trial._trial_id)

    def attach(self, local: "FrozenTrial", trial_id: int, number: int, state: "TrialState | None" = None) -> None:
        """``local`` (from ``ask``) is the database's trial ``trial_id`` (``number``), in ``state`` (default: running)."""
        from optuna.trial import TrialState

        self._local[trial_id] = (local._trial_id, local.number)
        self._states[trial_id] = state or TrialState.RUNNING
        self._numbers[trial_id] = number

    def number(self, trial_id: int) -> int:
        """The trial's number in the database study."""
        return self._numbers[trial_id]

    def tell(self, trial_id: int, state: "TrialState", values: Sequence[float] = (),
             constraints: Mapping[str, float] | None = None) -> None:
        """Finish the copy of ``trial_id`` as the database's is finished (the sampler learns from it)."""
        assert self.study is not None
        local_id, number = self._local[trial_id]
        for name, value in (constraints or {}).items():
            self._storage.set_trial_system_attr(local_id, constraint_key(name), float(value))
        self.study.tell(number, list(values) or None, state=state)
        self._states[trial_id] = state


__all__ = ["StudyMirror"]
