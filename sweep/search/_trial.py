"""A trial's runs and its score: parameters -> paired runs -> averaged metrics -> objectives.

Each trial runs its configuration under the PV flush mode and under the
baseline (plus ``baseline_overrides``), with the same seeds (``replicates``).
Runs are identified by ``workers.run_key`` exactly as sweep runs are, so a run a
sweep (or an earlier trial) already stored is read back, not simulated again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

from sweep._expand import PlannedRun
from sweep._spec import Impossible
from sweep.search._expr import BENEFITS, ExprError, Scope, ratio
from sweep.search._space import build_config
from sweep.search._spec import SearchSpec
from workers.config import ConfigError, RunConfig
from workers.result import NONDETERMINISTIC_FIELDS, metric_names

#: How the run_id of a config is computed (``workers.run_key`` with cached profiles).
RunKey = Callable[[RunConfig], str]
EvaluationState = Literal["complete", "failed", "impossible"]

_TEXT_METRICS = ("outcome", "crash_reason")
_NUMERIC_METRICS = tuple(m for m in metric_names() if m not in NONDETERMINISTIC_FIELDS and m not in _TEXT_METRICS)


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """The runs of one trial: a (PV run, baseline run) pair per replicate seed."""

    params: Mapping[str, Any]
    config: RunConfig  # the PV run of the first replicate
    pairs: tuple[tuple[PlannedRun, PlannedRun], ...]

    @property
    def runs(self) -> list[PlannedRun]:
        """Every run once, each baseline before the PV run that points at it."""
        seen: dict[str, PlannedRun] = {}
        for pv, base in self.pairs:
            seen.setdefault(base.run_id, base)
            seen.setdefault(pv.run_id, pv)
        return list(seen.values())

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    def run_map(self) -> dict[str, list[str]]:
        """What the trial's user attribute ``runs`` holds: run_ids by role, in replicate order."""
        return {"pv": [pv.run_id for pv, _ in self.pairs], "native": [base.run_id for _, base in self.pairs]}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A trial's result: objective values and constraint violations, or why there are none."""

    state: EvaluationState
    values: tuple[float, ...] = ()
    constraints: Mapping[str, float] = field(default_factory=dict)
    outcome: str = ""
    error: str = ""

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())


def plan_trial(spec: SearchSpec, params: Mapping[str, Any], run_key: RunKey) -> TrialPlan:
    """The paired runs for ``params``.

    Raises:
        Impossible: the parameters do not make a run (e.g. a topology that does not divide vcpus).
    """
    values = spec.space.field_values(params)
    first = build_config(spec.base, values, {"flush_mode": spec.pv_mode})
    pairs: list[tuple[PlannedRun, PlannedRun]] = []
    for i in range(spec.replicates):
        pv = first if i == 0 else first.replace(seed=first.seed + i)
        try:
            baseline = spec.compare.baseline_of(pv)
        except ConfigError as exc:
            raise Impossible(exc.field, f"{exc.problem} (in the baseline)") from None
        assert baseline is not None  # the PV mode is never the baseline mode (checked by the parser)
        base_id = run_key(baseline)
        pairs.append((PlannedRun(run_key(pv), pv, base_id), PlannedRun(base_id, baseline)))
    return TrialPlan(dict(params), first, tuple(pairs))


def scope_of(plan: TrialPlan, rows: Mapping[str, Mapping[str, Any]]) -> Scope:
    """The names an expression sees for this trial (metrics averaged over the replicates)."""
    pv = _average([rows[p.run_id] for p, _ in plan.pairs])
    native = _average([rows[b.run_id] for _, b in plan.pairs])
    baseline_config = plan.pairs[0][1].config
    roles = {"pv": {**plan.config.to_dict(), **pv}, "native": {**baseline_config.to_dict(), **native}}
    cfg = plan.config
    s, c, t = cfg.sockets_cores_threads
    bare: dict[str, Any] = {
        **cfg.to_dict(),
        "overcommit": cfg.overcommit,
        "consolidation": cfg.overcommit,
        "sockets": s,
        "cores_per_socket": c,
        "threads_per_core": t,
        "outcome": pv["outcome"] if pv["outcome"] != "ok" else native["outcome"],
    }
    for name, ((num_role, num), (den_role, den)) in BENEFITS.items():
        bare[name] = ratio(roles[num_role][num], roles[den_role][den])
    return Scope(bare, roles)


def evaluate(spec: SearchSpec, plan: TrialPlan, rows: Mapping[str, Mapping[str, Any]]) -> Evaluation:
    """Score a trial from its runs' metrics (``rows``: run_id -> result row).

    A non-finite objective (a crashed run has zero times, so a ratio over it is
    inf or nan) fails the trial with the reason; constraints are still recorded,
    so the trial shows as infeasible too.
    """
    scope = scope_of(plan, rows)
    outcome = str(scope.bare["outcome"])
    constraints: dict[str, float] = {}
    try:
        for c in spec.constraints:
            constraints[c.name] = float(c.expr.violation(scope))
    except ExprError as exc:
        return Evaluation("failed", (), constraints, outcome, f"constraint: {exc}")
    values: list[float] = []
    for o in spec.objectives:
        try:
            value = float(o.expr.evaluate(scope))
        except ExprError as exc:
            return Evaluation("failed", (), constraints, outcome, f"objective {o.name}: {exc}")
        if not math.isfinite(value):
            return Evaluation("failed", (), constraints, outcome, f"objective {o.name} is {value} ({_why(scope)})")
        values.append(value)
    return Evaluation("complete", tuple(values), constraints, outcome)


def _average(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Numbers averaged; outcome is ``ok`` only when every replicate's is."""
    out: dict[str, Any] = {
        "outcome": next((str(r.get("outcome")) for r in rows if r.get("outcome") != "ok"), "ok"),
        "crash_reason": next((str(r["crash_reason"]) for r in rows if r.get("crash_reason")), ""),
    }
    n = len(rows)
    for name in _NUMERIC_METRICS:
        total = 0.0
        for r in rows:
            v = r.get(name)
            if v is None:
                total = math.nan
                break
            total += float(v)
        out[name] = total / n if n else math.nan
    return out


def _why(scope: Scope) -> str:
    for role in ("native", "pv"):
        run = scope.roles[role]
        if run["outcome"] != "ok":
            return f"the {role} run: outcome {run['outcome']} {run.get('crash_reason', '')}".strip()
    return "a ratio over a zero metric"


def impossible(exc: Impossible) -> Evaluation:
    return Evaluation("impossible", error=f"{exc.field}: {exc.problem}")


__all__ = ["Evaluation", "RunKey", "TrialPlan", "evaluate", "impossible", "plan_trial", "scope_of"]
