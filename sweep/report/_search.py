"""Search findings: what an Optuna study (``flushsweep search``) found, read from the store's database.

The study lives in the same database as the store's metadata (Optuna keeps its
own tables there), so the report reads it with ``optuna.load_study(study_name,
storage=store.db_url)``. Nothing is created: a database without Optuna's tables
or without the study gives a note, not an error, because a report must still
publish when the search has not run yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweep.search._report import distinct_configurations, feasible_trials, param_importances

#: Trials listed as "best".
TOP_TRIALS = 5
#: The top region is the best quarter of completed trials (at least this many).
MIN_REGION_TRIALS = 3


@dataclass(frozen=True, slots=True)
class SearchFindings:
    """A study's best trials, the parameter region they share, and parameter importances."""

    study: str
    note: str = ""  # why there are no findings, when there are none
    directions: tuple[str, ...] = ()
    completed: int = 0
    best: tuple[dict[str, Any], ...] = ()  # {"number", "values", "params"}
    region: dict[str, str] = field(default_factory=dict)  # param -> "lo .. hi" or "a, b"
    importances: dict[str, float] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return not self.note


def search_findings(db_url: str, study_name: str) -> SearchFindings:
    """Read ``study_name`` from the database at ``db_url``; never creates tables or studies."""
    import optuna
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        has_tables = sa.inspect(engine).has_table("studies")
    except sa.exc.SQLAlchemyError as exc:
        return SearchFindings(study_name, note=f"could not read the database: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    if not has_tables:
        return SearchFindings(study_name, note=f"no Optuna study {study_name!r} in the store's database (no search has run there)")
    try:
        study = optuna.load_study(study_name=study_name, storage=db_url)
    except KeyError:
        return SearchFindings(study_name, note=f"no Optuna study {study_name!r} in the store's database; flushsweep search creates it")
    directions = tuple(d.name.lower() for d in study.directions)
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not complete:
        return SearchFindings(study_name, note=f"study {study_name!r} has no completed trials yet", directions=directions)
    # as `flushsweep search` prints them: feasible trials only, each configuration once
    ranked = _ranked(distinct_configurations(feasible_trials(study)), directions, study)
    best = tuple({"number": t.number, "values": tuple(t.values), "params": dict(t.params)} for t in ranked[:TOP_TRIALS])
    region_trials = ranked[: max(MIN_REGION_TRIALS, math.ceil(len(ranked) / 4))]
    return SearchFindings(
        study_name, directions=directions, completed=len(complete), best=best,
        region=_region(region_trials), importances=_importances(study, len(directions)),
    )


def _ranked(trials: list[Any], directions: tuple[str, ...], study: Any) -> list[Any]:
    if len(directions) == 1:
        sign = 1.0 if directions[0] == "minimize" else -1.0
        return sorted(trials, key=lambda t: (sign * t.values[0], t.number))
    pareto = {t.number for t in study.best_trials}  # multi-objective: the Pareto front first, by first objective
    sign = 1.0 if directions[0] == "minimize" else -1.0
    return sorted(trials, key=lambda t: (t.number not in pareto, sign * t.values[0], t.number))


def _region(trials: list[Any]) -> dict[str, str]:
    values: dict[str, list[Any]] = {}
    for t in trials:
        for name, value in t.params.items():
            values.setdefault(name, []).append(value)
    region: dict[str, str] = {}
    for name, vals in sorted(values.items()):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            lo, hi = min(vals), max(vals)
            region[name] = f"{lo:g}" if lo == hi else f"{lo:g} .. {hi:g}"
        else:
            region[name] = ", ".join(sorted({str(v) for v in vals}))
    return region


def _importances(study: Any, objectives: int) -> dict[str, float]:
    """The first objective's fANOVA importances, as `flushsweep search` prints them; {} when it cannot tell."""
    target = None if objectives == 1 else (lambda t: t.values[0])
    scores = param_importances(study, seed=0, target=target)
    return scores if isinstance(scores, dict) else {}


__all__ = ["SearchFindings", "search_findings"]
