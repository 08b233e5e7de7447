"""The report's tables as DataFrames of display strings, shared by the text summary and the HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweep.report._analysis import Analysis, Capacity
from sweep.report._spec import ReportSpec

if TYPE_CHECKING:
    import pandas


def count_text(c: Capacity | None, *, failover: bool = False) -> str:
    """``5`` / ``16+`` (met at max_vms, the limit may be higher) / ``0`` (not even one VM) / ``crash`` (at boot)."""
    if c is None:
        return ""
    if c.crashed:
        return "crash"
    value = c.n_plus_one if failover else c.vms_per_host
    return f"{value}" + ("+" if c.saturated else "")


def failover_column(mode: str, pool_hosts: int) -> str:
    return f"{mode}, 1 of {pool_hosts} down"


def capacity_frame(spec: ReportSpec, analysis: Analysis) -> "pandas.DataFrame":
    """One row per host, VM shape, workload and handler; per flush mode VMs per host, then with one host down."""
    import pandas as pd

    n = spec.pool_hosts
    rows: dict[tuple, dict[str, str]] = {}
    for c in analysis.capacity:
        row = rows.setdefault(c.shape, {"host": c.host, "vm": c.vm, "vcpus": str(c.vcpus), "topology": c.topology_label,
                                        "workload": c.workload, "KVM": c.host_kvm, "Hyper-V handler": c.hv_semantics})
        row[c.flush_mode] = count_text(c)
        row[failover_column(c.flush_mode, n)] = count_text(c, failover=True)
    columns = ["host", "vm", "vcpus", "topology", "workload", "KVM", "Hyper-V handler", *spec.flush_modes,
               *(failover_column(m, n) for m in spec.flush_modes)]
    return pd.DataFrame(list(rows.values()), columns=columns).fillna("")


def hazard_frame(analysis: Analysis) -> "pandas.DataFrame":
    import pandas as pd

    rows = []
    for h in analysis.hazards:
        row = {"vm": h.vm, "vcpus": str(h.vcpus), "topology": f"{h.topology_label} ({h.topology})",
               "enlightenments": "yes" if h.enlightenments else "no", "vCPUs used": str(h.effective_vcpus)}
        row.update({mode: outcome if outcome != "ok" else "boots" for mode, outcome in h.outcomes})
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def notes(analysis: Analysis) -> list[str]:
    """Per-ladder remarks worth a line (limits not reached, a VM that fails alone)."""
    seen: dict[str, list[str]] = {}
    alone: list[str] = []
    for c in analysis.capacity:
        who = f"{c.host}/{c.vm} {c.vcpus} vCPU {c.topology_label} {c.hv_semantics} {c.flush_mode}"
        if c.saturated:
            seen.setdefault(c.note, []).append(who)
        elif c.vms_per_host == 0 and not c.crashed:  # each with its own reason: the numbers differ
            alone.append(f"{who} misses the SLO with one VM alone: {'; '.join(c.failures)}")
    return [f"{note}: {', '.join(who[:4])}{' ...' if len(who) > 4 else ''}" for note, who in seen.items()] + alone


def loss_lines(analysis: Analysis) -> list[str]:
    """One sentence per shape where PV flush fits fewer VMs than native."""
    return [x.sentence for x in analysis.losses]


__all__ = ["capacity_frame", "count_text", "failover_column", "hazard_frame", "loss_lines", "notes"]
