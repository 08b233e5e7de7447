"""Where each ladder stands, from the stored rows: its judged rungs, its limit, and the rung to run next.

The one evaluation both the run loop (``_build``: which rungs to run next) and
the analysis (what the report says) use, so what is published is exactly what
decided when to stop. A rung counts once all its replicates are stored (matched
by run_id, so rows of other configurations in the same sweep never mix in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweep.report._capacity import next_rung, vms_limit
from sweep.report._plan import Ladder, ReportPlan
from sweep.report._slo import Alone, Rung, Verdict, judge

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True, slots=True)
class LadderState:
    """One ladder after judging what is stored.

    ``next_vms``: the rung to run next (None: finished, or ``waiting``).
    ``waiting``: a sibling flush mode's ``vms: 1`` rung (part of the reference) is not stored yet.
    ``saturated``: every rung up to the cap met the SLO, so the true limit may be higher.
    """

    ladder: Ladder
    verdicts: tuple[Verdict, ...]
    alone: Alone | None
    limit: int
    next_vms: int | None
    waiting: bool
    saturated: bool

    @property
    def finished(self) -> bool:
        return self.next_vms is None and not self.waiting

    @property
    def failed_at(self) -> Verdict | None:
        """The first rung that missed the SLO (None: none did)."""
        return next((v for v in self.verdicts if not v.passed), None)

    @property
    def crashed_alone(self) -> bool:
        return bool(self.verdicts) and self.verdicts[0].vms == 1 and self.verdicts[0].rung.crashed


def evaluate(plan: ReportPlan, rows: "pandas.DataFrame") -> tuple[LadderState, ...]:
    """Every ladder of ``plan`` judged from ``rows`` (result rows, e.g. of the report's sweep)."""
    spec = plan.spec
    by_id = _index(rows)
    measured: dict[str, dict[int, Rung]] = {}
    for ladder in plan.ladders:
        rungs: dict[int, Rung] = {}
        for vms in range(1, spec.max_vms + 1):
            ids = plan.run_ids(ladder, vms)
            if not all(i in by_id for i in ids):
                break
            rungs[vms] = Rung.of(vms, rows.loc[[by_id[i] for i in ids]], spec.slo.aggregate)
        measured[ladder.key] = rungs
    siblings: dict[tuple[Any, ...], list[Ladder]] = {}
    for ladder in plan.ladders:
        siblings.setdefault(ladder.shape, []).append(ladder)
    states = []
    for ladder in plan.ladders:
        rungs = measured[ladder.key]
        if 1 not in rungs:
            states.append(LadderState(ladder, (), None, 0, 1, False, False))
            continue
        alone_rungs = {s.flush_mode: measured[s.key].get(1) for s in siblings[ladder.shape]}
        if any(r is None for r in alone_rungs.values()):
            states.append(LadderState(ladder, (), None, 0, None, True, False))
            continue
        alone = Alone.best(alone_rungs)  # type: ignore[arg-type]
        verdicts: list[Verdict] = []
        for vms in sorted(rungs):
            verdicts.append(judge(spec.slo, rungs[vms], alone, ladder.flush_mode))
            if not verdicts[-1].passed:  # the ladder stops here; rungs above (from another run) do not count
                break
        limit = vms_limit(verdicts)
        states.append(LadderState(ladder, tuple(verdicts), alone, limit, next_rung(verdicts, spec.max_vms), False,
                                  limit >= spec.max_vms))
    return tuple(states)


def _index(rows: "pandas.DataFrame") -> dict[str, Any]:
    """run_id -> the row's index label (the first row of a run_id)."""
    if not len(rows):
        return {}
    ids = rows["run_id"].astype(str)
    first = ~ids.duplicated()
    return dict(zip(ids[first], rows.index[first]))


__all__ = ["LadderState", "evaluate"]
