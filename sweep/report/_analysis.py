"""What a report says, computed from the stored result rows of its plan.

- PV benefit per cell (baseline / PV for real, sys and p99 latency: "x times
  better"), the paired geometric mean over replicates (``sweep._summary.benefit_table``).
- Per VM shape, workload and flush mode: the SLO metric at each measured ratio,
  the highest ratio meeting the SLO and the failover-safe ratio (``_capacity``).
- The Windows >64-vCPU hazard: which shapes crash at boot without PV flush, from
  the runs' outcomes and crash reasons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweep.report._capacity import Point, failover_ratio, failover_safe_ratio, highest_ratio, value_at
from sweep.report._plan import CELL_KEY, ReportPlan
from sweep.report._spec import BASELINE_MODE, Slo

if TYPE_CHECKING:
    import pandas

#: A VM shape as the report shows it.
SHAPE_COLUMNS = ("host", "vm", "guest_os", "vcpus", "topology_label")
#: Heatmap metrics: (benefit column of benefit_table, title).
HEATMAP_METRICS = (("real x", "real time"), ("sys x", "system time"), ("p99 x", "shootdown p99 latency"))
#: Windows uses at most 64 sockets' worth of vCPUs; above 64 vCPUs the 2018 boot crash is possible.
WINDOWS_HAZARD_VCPUS = 64


@dataclass(frozen=True, slots=True)
class Curve:
    """The SLO metric of one shape, workload and flush mode over the measured ratios."""

    host: str
    vm: str
    guest_os: str
    vcpus: int
    topology_label: str
    workload: str
    flush_mode: str
    points: tuple[Point, ...]

    @property
    def shape(self) -> tuple[Any, ...]:
        return (self.host, self.vm, self.guest_os, self.vcpus, self.topology_label, self.workload)


@dataclass(frozen=True, slots=True)
class Capacity:
    """The answer for one shape, workload and flush mode.

    ``max_ratio``: highest measured ratio meeting the SLO (None: not even the lowest).
    ``saturated``: every measured ratio met it, so the true limit may be higher.
    ``failover_safe``: highest ratio that still meets it with one pool host failed.
    ``at_failover``: the metric at ``max_ratio * N/(N-1)`` (None: unknown or crashed).
    """

    host: str
    vm: str
    guest_os: str
    vcpus: int
    topology_label: str
    workload: str
    flush_mode: str
    max_ratio: float | None
    saturated: bool
    failover_safe: float | None
    at_failover: float | None
    crashed: bool
    note: str

    @property
    def key(self) -> str:
        return f"{self.host}/{self.vm}/{self.vcpus}/{self.topology_label}/{self.workload}/{self.flush_mode}"


@dataclass(frozen=True, slots=True)
class HazardRow:
    """A Windows VM shape above 64 vCPUs and what each flush mode did at boot."""

    vm: str
    vcpus: int
    topology_label: str
    topology: str
    enlightenments: bool
    effective_vcpus: int
    outcomes: tuple[tuple[str, str], ...]  # (flush_mode, "ok" or the crash reason)

    @property
    def crashes_without_pv(self) -> bool:
        return any(mode == BASELINE_MODE and outcome != "ok" for mode, outcome in self.outcomes)


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything the report renders, derived from the plan and its result rows."""

    rows: "pandas.DataFrame"  # result rows joined with their cells
    benefit: "pandas.DataFrame"  # one row per PV cell: host, guest_os, workload, flush_mode, topology_label, vcpus, ratio, benefits
    curves: tuple[Curve, ...]
    capacity: tuple[Capacity, ...]
    hazards: tuple[HazardRow, ...]
    missing: int  # planned runs without a stored result


def analyse(plan: ReportPlan, results: "pandas.DataFrame") -> Analysis:
    """Join the plan's result rows with their cells and compute the report's tables."""
    import pandas as pd

    from sweep._summary import benefit_table

    planned = plan.run_ids
    results = results[results["run_id"].isin(planned)].drop_duplicates("run_id")
    cells = plan.cells_frame()
    rows = results.merge(cells, on=list(CELL_KEY), how="inner", suffixes=("", "__cell"))
    by = ["host", "guest_os", "workload", "flush_mode", "topology_label", "vcpus", "ratio"]
    benefit = benefit_table(rows, by) if len(rows) else pd.DataFrame(columns=by)
    curves = _curves(rows, plan.spec.slo)
    capacity = tuple(_capacity(c, plan.spec.slo, plan.spec.pool_hosts) for c in curves)
    return Analysis(rows, benefit, curves, capacity, _hazards(rows), len(planned) - len(results))


def _curves(rows: "pandas.DataFrame", slo: Slo) -> tuple[Curve, ...]:
    if not len(rows):
        return ()
    keys = [*SHAPE_COLUMNS, "workload", "flush_mode"]
    out: list[Curve] = []
    for key, group in rows.groupby(keys, sort=True):
        reference = None
        if slo.metric == "throughput_loss":
            ref = group[(group["ratio"] == 1.0) & (group["outcome"] == "ok")]["ops_per_s"]
            reference = float(ref.mean()) if len(ref) and ref.mean() > 0 else None
        points = []
        for ratio, at in group.groupby("ratio", sort=True):
            crashed = bool((at["outcome"] != "ok").any())
            points.append(Point(float(ratio), None if crashed else _aggregate(at, slo, reference), crashed))
        out.append(Curve(*key, points=tuple(points)))  # type: ignore[misc]
    return tuple(out)


def _aggregate(at: "pandas.DataFrame", slo: Slo, reference: float | None) -> float | None:
    if slo.metric == "throughput_loss":
        if reference is None:
            return None
        ops = at["ops_per_s"]
        worst = float(ops.min()) if slo.aggregate == "worst" else float(ops.mean())
        return 1.0 - worst / reference
    values = at[slo.metric].astype(float)
    value = float(values.max()) if slo.aggregate == "worst" else float(values.mean())
    return None if math.isnan(value) else value


def _capacity(curve: Curve, slo: Slo, pool_hosts: int) -> Capacity:
    top = highest_ratio(curve.points, slo.max)
    crashed = all(p.crashed for p in curve.points)
    saturated = top is not None and top == max(p.ratio for p in curve.points)
    at_failover = value_at(curve.points, failover_ratio(top, pool_hosts))[0] if top is not None else None
    if crashed:
        note = "crashes at boot"
    elif top is None and all(p.value is None for p in curve.points):
        note = "no reference at ratio 1 (VM larger than host)" if slo.metric == "throughput_loss" else "no results"
    elif top is None:
        note = f"misses the SLO at the lowest measured ratio {min(p.ratio for p in curve.points):g}"
    elif saturated:
        note = "meets the SLO at every measured ratio; measure higher ratios to find the limit"
    else:
        note = ""
    return Capacity(
        curve.host, curve.vm, curve.guest_os, curve.vcpus, curve.topology_label, curve.workload, curve.flush_mode,
        top, saturated, failover_safe_ratio(curve.points, slo.max, pool_hosts), at_failover, crashed, note,
    )


def _hazards(rows: "pandas.DataFrame") -> tuple[HazardRow, ...]:
    if not len(rows):
        return ()
    big = rows[(rows["guest_os"] == "windows-2016") & (rows["vcpus"] > WINDOWS_HAZARD_VCPUS)]
    out: list[HazardRow] = []
    for (vm, vcpus, label, topology, enl), group in big.groupby(["vm", "vcpus", "topology_label", "topology", "enlightenments"], sort=True):
        outcomes = []
        for mode, at in group.groupby("flush_mode", sort=False):
            crashed = at[at["outcome"] != "ok"]
            outcomes.append((str(mode), str(crashed["crash_reason"].iloc[0] or "crash") if len(crashed) else "ok"))
        outcomes.sort(key=lambda m: (m[0] != BASELINE_MODE, m[0]))
        eff = int(group["effective_vcpus"].max())
        out.append(HazardRow(str(vm), int(vcpus), str(label), str(topology), bool(enl), eff, tuple(outcomes)))
    return tuple(out)


__all__ = ["Analysis", "Capacity", "Curve", "HEATMAP_METRICS", "HazardRow", "SHAPE_COLUMNS", "analyse"]
