"""What a report says, computed from the stored result rows of its ladders.

- Per ladder (host, VM shape, workload, Hyper-V handler, flush mode): VMs per
  host meeting the SLO, and with one host of the pool down (``_ladder``,
  ``_capacity``), each labelled with the KVM generation and handler it assumes.
- Where a PV mode fits fewer VMs than native, a sentence saying why (``_why``).
- PV benefit per rung: each PV run against the native run of the same shape,
  vms count and seed, geometric mean over replicates (``sweep._summary.benefit_table``).
- The Windows >64-vCPU hazard: which shapes crash at boot without PV flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweep.report._capacity import n_plus_one_vms
from sweep.report._ladder import LadderState, evaluate
from sweep.report._plan import LADDER_FIELDS, ReportPlan
from sweep.report._spec import BASELINE_MODE
from sweep.report._why import PvLoss, pv_losses

if TYPE_CHECKING:
    import pandas

#: Heatmap metrics: (benefit column of benefit_table, title).
HEATMAP_METRICS = (("real x", "real time"), ("sys x", "system time"), ("p99 x", "shootdown p99 latency"))
#: Windows uses at most 64 sockets' worth of vCPUs; above 64 vCPUs the 2018 boot crash is possible.
WINDOWS_HAZARD_VCPUS = 64
#: Columns that name a ladder in the report (beside LADDER_FIELDS).
LABEL_COLUMNS = ("host", "vm", "topology_label", "host_kvm")


@dataclass(frozen=True, slots=True)
class Capacity:
    """The answer for one ladder.

    ``vms_per_host``: the largest vms count such that it and every smaller one met the SLO.
    ``saturated``: met at ``max_vms``, so the true limit may be higher.
    ``n_plus_one``: VMs per host such that the pool still meets the SLO with one host down.
    ``failed_at``/``failures``: the first rung that missed the SLO and why (None/() if none did).
    """

    host: str
    vm: str
    guest_os: str
    vcpus: int
    topology_label: str
    workload: str
    hv_semantics: str
    host_kvm: str
    flush_mode: str
    vms_per_host: int
    saturated: bool
    n_plus_one: int
    crashed: bool
    failed_at: int | None
    failures: tuple[str, ...]
    note: str

    @property
    def key(self) -> str:
        return "/".join(str(p) for p in (self.host, self.vm, self.vcpus, self.topology_label, self.workload,
                                          self.hv_semantics, self.flush_mode))

    @property
    def shape(self) -> tuple:
        return (self.host, self.vm, self.vcpus, self.topology_label, self.workload, self.hv_semantics)


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

    rows: "pandas.DataFrame"  # the judged rungs' result rows, with their ladder's labels and ``vms``
    states: tuple[LadderState, ...]
    capacity: tuple[Capacity, ...]
    losses: tuple[PvLoss, ...]
    benefit: "pandas.DataFrame"  # per PV rung: host, guest_os, workload, hv_semantics, flush_mode, topology_label, vcpus, vms
    hazards: tuple[HazardRow, ...]
    runs: int  # result rows behind the judged rungs


def analyse(plan: ReportPlan, results: "pandas.DataFrame") -> Analysis:
    """Judge every ladder from ``results`` and compute the report's tables."""
    import pandas as pd

    from sweep._summary import benefit_table

    states = evaluate(plan, results)
    spec = plan.spec
    used = {rid: state for state in states for v in state.verdicts for rid in plan.run_ids(state.ladder, v.vms)}
    rows = results[results["run_id"].isin(used)].drop_duplicates("run_id").copy()
    labels = pd.DataFrame([{**dict(zip(LADDER_FIELDS, s.ladder.fields)), **{c: getattr(s.ladder, c) for c in LABEL_COLUMNS}}
                           for s in states])
    if len(rows):
        rows = rows.merge(labels, on=list(LADDER_FIELDS), how="inner", suffixes=("", "__ladder"))
        rows = rows.drop(columns=[c for c in rows.columns if c.endswith("__ladder")])
    capacity = tuple(_capacity(s, spec.pool_hosts) for s in states)
    losses = pv_losses(states, results, lambda s, vms: plan.run_ids(s.ladder, vms))
    by = ["host", "guest_os", "workload", "hv_semantics", "flush_mode", "topology_label", "vcpus", "vms"]
    paired = _paired(rows)
    benefit = benefit_table(paired, by) if len(paired) else pd.DataFrame(columns=by)
    return Analysis(rows, states, capacity, losses, benefit, _hazards(rows), len(rows))


def _paired(rows: "pandas.DataFrame") -> "pandas.DataFrame":
    """``rows`` with each PV run's ``baseline_run_id`` set to the native run of the same rung and seed."""
    if not len(rows):
        return rows
    key = [f for f in LADDER_FIELDS if f != "flush_mode"] + ["vms", "seed"]
    native = rows[rows["flush_mode"] == BASELINE_MODE][[*key, "run_id"]].rename(columns={"run_id": "__native"})
    out = rows.drop(columns=["baseline_run_id"], errors="ignore").merge(native, on=key, how="left")
    out["baseline_run_id"] = out["__native"].where(out["flush_mode"] != BASELINE_MODE)
    return out.drop(columns=["__native"])


def _capacity(state: LadderState, pool_hosts: int) -> Capacity:
    lad = state.ladder
    failed = state.failed_at
    if state.crashed_alone:
        note = "crashes at boot"
    elif state.saturated:
        note = "meets the SLO at max_vms; raise max_vms to find the limit"
    elif state.limit == 0 and failed is not None:
        note = f"misses the SLO with one VM alone: {'; '.join(failed.failures)}"
    else:
        note = ""
    return Capacity(
        lad.host, lad.vm, lad.guest_os, lad.vcpus, lad.topology_label, lad.workload, lad.hv_semantics, lad.host_kvm,
        lad.flush_mode, state.limit, state.saturated, n_plus_one_vms(state.limit, pool_hosts), state.crashed_alone,
        failed.vms if failed is not None else None, failed.failures if failed is not None else (), note,
    )


def _hazards(rows: "pandas.DataFrame") -> tuple[HazardRow, ...]:
    if not len(rows):
        return ()
    big = rows[(rows["guest_os"] == "windows-2016") & (rows["vcpus"] > WINDOWS_HAZARD_VCPUS) & (rows["vms"] == 1)]
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


__all__ = ["Analysis", "Capacity", "HEATMAP_METRICS", "HazardRow", "analyse"]
