"""Writes a search's trials into its Optuna study, through Optuna's public storage API only.

The sampler works on an in-memory copy of the study (``_mirror``), so the database sees
only what the driver decided: a new trial is one template trial (``create_new_trial``:
parameters, sampler attributes and the runs it will use, in one transaction) and a
heartbeat; its result is one attribute (``outcome``, or ``error``), its constraints, then
its final state and values (``set_trial_state_values``, last, so a finished trial always
has its attributes). ``optuna.load_study`` and ``optuna-dashboard`` read these as any
trial; nothing depends on Optuna's table layout or version beyond its documented API.

A queued trial (a seed or a retry) is claimed with ``set_trial_state_values(RUNNING)``,
which only one driver wins. A trial that another driver failed as stale rejects the
result of the driver that stalled (``UpdateFinishedTrialError``): its retry is queued.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState


@dataclass(frozen=True, slots=True)
class Finish:
    """A trial's result: its final state, objective values, user attributes and constraint values."""

    trial_id: int
    state: "TrialState"
    values: tuple[float, ...] = ()
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    constraints: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewTrial:
    """A trial to create: its parameters (and their distributions), the sampler's attributes, its user attributes."""

    params: Mapping[str, Any]
    distributions: Mapping[str, "BaseDistribution"]
    system_attrs: Mapping[str, Any]
    user_attrs: Mapping[str, Any] = field(default_factory=dict)


def constraint_attrs(constraints: Mapping[str, float]) -> dict[str, float]:
    """The system attributes Optuna keeps named constraints under, as ``FrozenTrial.set_constraint`` sets them.

    Asked of Optuna itself (on a scratch trial) rather than spelled here, so the study
    holds constraints exactly as Optuna's own ``Trial.set_constraint`` would write them.
    """
    import optuna

    if not constraints:
        return {}
    probe = optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.0)
    for name, value in constraints.items():
        probe.set_constraint(name, float(value))
    return dict(probe.system_attrs)


def template(trial: NewTrial, state: "TrialState", *, values: tuple[float, ...] = (),
             constraints: Mapping[str, float] | None = None) -> "FrozenTrial":
    """``trial`` as a FrozenTrial in ``state``, for ``create_new_trial`` (a finished one with its values and constraints)."""
    from optuna.trial import FrozenTrial, TrialState

    now = dt.datetime.now()  # Optuna stamps trial datetimes in local time (FrozenTrial shows them so)
    finished = state.is_finished()
    return FrozenTrial(
        number=-1, state=state, value=None, values=list(values) or None,
        datetime_start=None if state == TrialState.WAITING else now, datetime_complete=now if finished else None,
        params=dict(trial.params), distributions=dict(trial.distributions), user_attrs=dict(trial.user_attrs),
        system_attrs={**trial.system_attrs, **constraint_attrs(constraints or {})}, intermediate_values={}, trial_id=-1,
    )


class StudyWriter:
    """The study writes of a search, on ``RDBStorage``'s public methods (a transaction per call).

    Args:
        storage: the study's storage.
        study_id: the study's id in it.
    """

    def __init__(self, storage: "optuna.storages.RDBStorage", study_id: int) -> None:
        self.storage = storage
        self.study_id = study_id

    def create(self, trial: NewTrial, *, number_hint: int) -> tuple[int, int]:
        """Create ``trial`` RUNNING with a heartbeat; returns its (trial_id, number).

        ``number_hint`` is the number it most likely gets (the study's trial count as this
        driver knows it); checking it costs one lookup, finding the number out several.
        """
        from optuna.trial import TrialState

        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template(trial, TrialState.RUNNING))
        self.storage.record_heartbeat(trial_id)
        return trial_id, self._number(trial_id, number_hint)

    def create_finished(self, trial: NewTrial, state: "TrialState", *, values: tuple[float, ...] = (),
                        constraints: Mapping[str, float] | None = None, number_hint: int) -> tuple[int, int]:
        """Create ``trial`` finished in ``state`` (a trial told as soon as it was asked); returns (trial_id, number)."""
        trial_id = self.storage.create_new_trial(
            self.study_id, template_trial=template(trial, state, values=values, constraints=constraints))
        return trial_id, self._number(trial_id, number_hint)

    def _number(self, trial_id: int, hint: int) -> int:
        try:
            if self.storage.get_trial_id_from_study_id_trial_number(self.study_id, hint) == trial_id:
                return hint
        except KeyError:
            pass
        return self.storage.get_trial_number_from_id(trial_id)

    def claim(self, number: int) -> int | None:
        """A queued trial: WAITING -> RUNNING, with a heartbeat; its trial_id, or None if another driver took it."""
        import optuna
        from optuna.trial import TrialState

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        try:
            if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        self.storage.record_heartbeat(trial_id)
        return trial_id

    def finish(self, result: Finish) -> bool:
        """Write a trial's result (attributes, constraints, then state); False if the trial was already finished."""
        import optuna

        try:
            for key, value in result.user_attrs.items():
                self.storage.set_trial_user_attr(result.trial_id, key, value)
            for key, value in constraint_attrs(result.constraints).items():
                self.storage.set_trial_system_attr(result.trial_id, key, value)
            self.storage.set_trial_state_values(result.trial_id, result.state, list(result.values) or None)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def heartbeat(self, trial_ids: list[int]) -> None:
        for trial_id in trial_ids:
            self.storage.record_heartbeat(trial_id)

    def set_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """User attributes of a running trial."""
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def open_trials(self) -> list["FrozenTrial"]:
        """The study's WAITING and RUNNING trials (few, so cheap to read)."""
        from optuna.trial import TrialState

        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))

    def has_trial(self, number: int) -> bool:
        """Whether the study has a trial numbered ``number`` (so at least ``number + 1`` trials)."""
        try:
            self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        except KeyError:
            return False
        return True


__all__ = ["Finish", "NewTrial", "StudyWriter", "constraint_attrs", "template"]
