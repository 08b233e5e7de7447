"""Writes a search's trials into its Optuna study: one transaction per trial.

Optuna's own ``study.ask``/``tell`` on ``RDBStorage`` commit one ORM transaction
per parameter, attribute, heartbeat and state change (about 70 SQL statements
and 15 commits per trial), several times what a 40 ms trial may cost. The
driver samples on an in-memory copy of the study (``_mirror``) and writes here:
a new trial (parameters, sampler attributes, heartbeat) in the same transaction
as the results of the trials finished since the last one (values, attributes,
constraints, state).

``SqlTrialWriter`` does so with SQLAlchemy Core on Optuna's own tables (the
rows Optuna would write, so ``optuna.load_study`` and ``optuna-dashboard``
read them like any trial). It is used only for the schema and datetime
convention it was written against (``SQL_SCHEMA``: Optuna 5 stores naive UTC);
otherwise ``ApiTrialWriter`` does the same through ``RDBStorage``'s public
methods, slower but valid for any Optuna version.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import TrialState

#: Optuna's RDB schema revision (alembic) and the Optuna major version the SQL writer matches.
SQL_SCHEMA = ("v3.2.0.a", 5)


@dataclass(frozen=True, slots=True)
class TrialRow:
    """A trial of the study as the driver needs it to notice changes: id, number, state."""

    trial_id: int
    number: int
    state: "TrialState"


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
    """A trial to create RUNNING: its parameters (and their distributions) and the sampler's attributes."""

    params: Mapping[str, Any]
    distributions: Mapping[str, "BaseDistribution"]
    system_attrs: Mapping[str, Any]


class TrialWriter(Protocol):
    """The study writes of a search (``trial_id``: the trial's id in the database)."""

    def write(self, finished: Sequence[Finish] = (), new: NewTrial | None = None) -> tuple[list[int], tuple[int, int] | None]:
        """Finish trials, then create ``new`` RUNNING with a heartbeat, in one transaction.

        Returns:
            The ids of the trials that were already finished (another driver failed them
            as stale; their results are dropped), and the new trial's (trial_id, number).
        """

    def claim(self, trial_id: int, trial: NewTrial) -> bool:
        """A queued trial: WAITING -> RUNNING with its parameters and a heartbeat; False if another driver took it."""

    def set_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """User attributes of a running trial."""

    def rows(self) -> list[TrialRow]:
        """Every trial of the study (cheap: no parameters or attributes)."""


def constraint_key(name: str) -> str:
    """The system attribute Optuna keeps a named constraint under (``Trial.set_constraint``)."""
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    return f"{_CONSTRAINTS_KEY}:{name}"


def trial_writer(storage: "optuna.storages.RDBStorage", study_id: int, *, sql: bool | None = None) -> TrialWriter:
    """The SQL writer when the database has the schema it was written for, else the API writer.

    Args:
        sql: force one (tests); None picks by schema and Optuna version.
    """
    if sql is None:
        sql = sql_writer_fits(storage)
    return SqlTrialWriter(storage, study_id) if sql else ApiTrialWriter(storage, study_id)


def sql_writer_fits(storage: "optuna.storages.RDBStorage") -> bool:
    import optuna

    revision, major = SQL_SCHEMA
    if int(optuna.__version__.split(".")[0]) != major:
        return False
    dialect = storage.engine.dialect.name
    if not (dialect == "postgresql" or (dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 35))):  # RETURNING
        return False
    return storage.get_current_version() == revision == storage.get_head_version()


def _utcnow() -> dt.datetime:
    """Optuna 5 stores trial datetimes as naive UTC (``FrozenTrial`` shows them in local time)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class SqlTrialWriter:
    """``TrialWriter`` in SQLAlchemy Core on Optuna's tables (SQLite and PostgreSQL).

    Each transaction on SQLite starts with a write, so it holds the write lock
    from its first statement (a read first could not upgrade once another
    process committed). A trial's number is the count of the study's trials
    before it, as Optuna counts it, under the lock every creator takes (the
    study row ``FOR UPDATE`` on PostgreSQL, the database on SQLite).
    Statements are built once: building them costs more than running them.
    """

    def __init__(self, storage: "optuna.storages.RDBStorage", study_id: int) -> None:
        import sqlalchemy as sa
        from optuna.storages._rdb import models
        from optuna.trial import TrialState

        self.engine = storage.engine
        self.study_id = study_id
        self._stored_value = models.TrialValueModel.value_to_stored_repr
        t = self._trials = models.TrialModel.__table__
        params = models.TrialParamModel.__table__
        studies = models.StudyModel.__table__
        state = sa.bindparam("b_state", type_=t.c.state.type)
        self._lock_study = sa.select(studies.c.study_id).where(studies.c.study_id == study_id).with_for_update()
        count = sa.select(
            sa.func.count(), sa.literal(study_id), sa.literal(TrialState.RUNNING, t.c.state.type),
            sa.bindparam("b_start", type_=t.c.datetime_start.type),
        ).select_from(t).where(t.c.study_id == study_id)
        self._insert_trial = (
            sa.insert(t).from_select(["number", "study_id", "state", "datetime_start"], count).returning(t.c.trial_id, t.c.number)
        )
        self._end_trial = (
            sa.update(t).where(t.c.trial_id == sa.bindparam("b_id"), t.c.state == TrialState.RUNNING)
            .values(state=state, datetime_complete=sa.bindparam("b_done", type_=t.c.datetime_complete.type))
        )
        self._claim_trial = (
            sa.update(t).where(t.c.trial_id == sa.bindparam("b_id"), t.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=sa.bindparam("b_start", type_=t.c.datetime_start.type))
        )
        self._param_names = sa.select(params.c.param_name).where(params.c.trial_id == sa.bindparam("b_id"))
        self._insert_params = sa.insert(params)
        self._insert_values = sa.insert(models.TrialValueModel.__table__)
        self._insert_heartbeat = sa.insert(models.TrialHeartbeatModel.__table__)
        self._user = self._upsert(models.TrialUserAttributeModel.__table__)
        self._system = self._upsert(models.TrialSystemAttributeModel.__table__)
        self._rows = sa.select(t.c.trial_id, t.c.number, t.c.state).where(t.c.study_id == study_id)

    def _upsert(self, table: Any) -> Any:
        """Insert or replace an attribute (a retried trial inherits its predecessor's ``runs``)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        return stmt.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key], set_={"value_json": stmt.excluded.value_json})

    def write(self, finished: Sequence[Finish] = (), new: NewTrial | None = None) -> tuple[list[int], tuple[int, int] | None]:
        rejected: list[int] = []
        created: tuple[int, int] | None = None
        if not finished and new is None:
            return rejected, created
        with self.engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if new is not None and postgres:  # SQLite: the first write takes the database's write lock
                conn.execute(self._lock_study)
            for f in finished:
                if not conn.execute(self._end_trial, {"b_id": f.trial_id, "b_state": f.state, "b_done": _utcnow()}).rowcount:
                    rejected.append(f.trial_id)
                    continue
                if f.values:
                    conn.execute(self._insert_values, [
                        {"trial_id": f.trial_id, "objective": i, "value": v, "value_type": kind}
                        for i, (v, kind) in enumerate(self._stored_value(float(x)) for x in f.values)
                    ])
                self._attrs(conn, self._user, f.trial_id, f.user_attrs)
                self._attrs(conn, self._system, f.trial_id, {constraint_key(k): float(v) for k, v in f.constraints.items()})
            if new is not None:
                trial_id, number = conn.execute(self._insert_trial, {"b_start": _utcnow()}).one()
                created = (int(trial_id), int(number))
                self._params(conn, created[0], new, set())
                self._attrs(conn, self._system, created[0], new.system_attrs)
                conn.execute(self._insert_heartbeat, [{"trial_id": created[0]}])
        return rejected, created

    def claim(self, trial_id: int, trial: NewTrial) -> bool:
        with self.engine.begin() as conn:
            if not conn.execute(self._claim_trial, {"b_id": trial_id, "b_start": _utcnow()}).rowcount:
                return False
            conn.execute(self._insert_heartbeat, [{"trial_id": trial_id}])
            self._attrs(conn, self._system, trial_id, trial.system_attrs)
            self._params(conn, trial_id, trial, set(conn.execute(self._param_names, {"b_id": trial_id}).scalars()))
        return True

    def set_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            self._attrs(conn, self._user, trial_id, attrs)

    def rows(self) -> list[TrialRow]:
        with self.engine.connect() as conn:
            return [TrialRow(int(i), -1 if n is None else int(n), s) for i, n, s in conn.execute(self._rows)]

    def _params(self, conn: Any, trial_id: int, trial: NewTrial, have: set[str]) -> None:
        from optuna.distributions import distribution_to_json

        rows = [
            {"trial_id": trial_id, "param_name": name, "param_value": trial.distributions[name].to_internal_repr(value),
             "distribution_json": distribution_to_json(trial.distributions[name])}
            for name, value in trial.params.items() if name not in have
        ]
        if rows:
            conn.execute(self._insert_params, rows)

    @staticmethod
    def _attrs(conn: Any, upsert: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
        if attrs:
            conn.execute(upsert, [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()])


class ApiTrialWriter:
    """``TrialWriter`` through ``RDBStorage``'s public methods (a transaction per call)."""

    def __init__(self, storage: "optuna.storages.RDBStorage", study_id: int) -> None:
        self.storage = storage
        self.study_id = study_id

    def write(self, finished: Sequence[Finish] = (), new: NewTrial | None = None) -> tuple[list[int], tuple[int, int] | None]:
        import optuna
        from optuna.trial import FrozenTrial, TrialState

        rejected = []
        for f in finished:
            try:
                for key, value in f.user_attrs.items():
                    self.storage.set_trial_user_attr(f.trial_id, key, value)
                for name, value in f.constraints.items():
                    self.storage.set_trial_system_attr(f.trial_id, constraint_key(name), float(value))
                self.storage.set_trial_state_values(f.trial_id, f.state, list(f.values) or None)
            except optuna.exceptions.UpdateFinishedTrialError:
                rejected.append(f.trial_id)
        if new is None:
            return rejected, None
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=dt.datetime.now(),
            datetime_complete=None, params=dict(new.params), distributions=dict(new.distributions), user_attrs={},
            system_attrs=dict(new.system_attrs), intermediate_values={}, trial_id=-1,
        )
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        self.storage.record_heartbeat(trial_id)
        return rejected, (trial_id, self.storage.get_trial(trial_id).number)

    def claim(self, trial_id: int, trial: NewTrial) -> bool:
        import optuna
        from optuna.trial import TrialState

        try:
            if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        self.storage.record_heartbeat(trial_id)
        for key, value in trial.system_attrs.items():
            self.storage.set_trial_system_attr(trial_id, key, value)
        have = self.storage.get_trial(trial_id).params
        for name, value in trial.params.items():
            if name not in have:
                dist = trial.distributions[name]
                self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
        return True

    def set_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def rows(self) -> list[TrialRow]:
        return [TrialRow(t._trial_id, t.number, t.state) for t in self.storage.get_all_trials(self.study_id, deepcopy=False)]


__all__ = ["SQL_SCHEMA", "ApiTrialWriter", "Finish", "NewTrial", "SqlTrialWriter", "TrialRow", "TrialWriter", "constraint_key", "trial_writer"]
