"""The report's tables as DataFrames of display strings, shared by the text summary and the HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweep.report._analysis import Analysis, Capacity
from sweep.report._spec import ReportSpec

if TYPE_CHECKING:
    import pandas


def ratio_text(c: Capacity | None, *, failover: bool = False) -> str:
    """``4`` / ``4+`` (met at every measured ratio) / ``crash`` / ``-`` (no measured ratio met the SLO)."""
    if c is None:
        return ""
    if c.crashed:
        return "crash"
    value = c.failover_safe if failover else c.max_ratio
    if value is None:
        return "-"
    return f"{value:g}" + ("+" if c.saturated and not failover else "")


def capacity_frame(spec: ReportSpec, analysis: Analysis) -> "pandas.DataFrame":
    """One row per shape and workload; per flush mode the highest ratio and the failover-safe ratio."""
    import pandas as pd

    n = spec.pool_hosts
    rows: dict[tuple, dict[str, str]] = {}
    for c in analysis.capacity:
        key = (c.host, c.vm, c.vcpus, c.topology_label, c.workload)
        row = rows.setdefault(key, {"host": c.host, "vm": c.vm, "vcpus": str(c.vcpus), "topology": c.topology_label, "workload": c.workload})
        row[c.flush_mode] = ratio_text(c)
        row[f"{c.flush_mode}, 1 of {n} down"] = ratio_text(c, failover=True)
    columns = ["host", "vm", "vcpus", "topology", "workload", *spec.flush_modes, *(f"{m}, 1 of {n} down" for m in spec.flush_modes)]
    frame = pd.DataFrame(list(rows.values()), columns=columns)
    return frame.fillna("")


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
    """Per-shape remarks worth a line (limits not reached, missing references)."""
    seen: dict[str, list[str]] = {}
    for c in analysis.capacity:
        if c.note and not c.crashed:
            seen.setdefault(c.note, []).append(f"{c.host}/{c.vm} {c.vcpus} vCPU {c.topology_label} {c.flush_mode}")
    return [f"{note}: {', '.join(who[:4])}{' ...' if len(who) > 4 else ''}" for note, who in seen.items()]


__all__ = ["capacity_frame", "hazard_frame", "notes", "ratio_text"]
