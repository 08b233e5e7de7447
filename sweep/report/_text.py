"""The plain-text summary: printed to stdout so a cron mail or CI log is useful on its own."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sweep._summary import format_table
from sweep.report._analysis import Analysis
from sweep.report._search import SearchFindings
from sweep.report._spec import BASELINE_MODE, ReportSpec
from sweep.report._tables import capacity_frame, hazard_frame, notes


def summary_text(
    spec: ReportSpec,
    analysis: Analysis,
    record: Mapping[str, Any],
    *,
    search: SearchFindings | None,
    previous: Mapping[str, Any] | None,
    changes: Sequence[str],
    location: str,
) -> str:
    n = spec.pool_hosts
    runs = record["runs"]
    lines = [
        f"flushsweep report {spec.name}, period {record['period_key']} ({spec.period}): {location}",
        f"SLO: {spec.slo.describe()}; pool of {n} hosts (one down: ratio x {n}/{n - 1})",
        f"runs: {runs['planned']} planned, {runs['computed']} computed now, {runs['reused']} reused from the store, "
        f"{runs['failed']} failed; sweep {record['sweep']}",
        "",
        "Highest consolidation ratio (vCPU:pCPU) meeting the SLO ('+': met at every measured ratio, '-': at none):",
        format_table(capacity_frame(spec, analysis)),
    ]
    extra = notes(analysis)
    if extra:
        lines += ["", *(f"note: {line}" for line in extra)]
    lines += ["", *hazard_lines(analysis)]
    if search is not None:
        lines += ["", *search_lines(search)]
    lines += [
        "",
        f"provenance: code {record['code_version']}; profile {record['profile']['name']}@{record['profile']['digest']}; "
        f"spec {record['spec_source']}@{record['spec_hash']}",
        "sweeps that computed these runs: " + (", ".join(f"{k} ({v})" for k, v in record["sweeps"].items()) or "none"),
    ]
    if previous is None:
        lines.append("changes: first report of this name")
    elif changes:
        lines.append(f"changes since {previous.get('period_key')}:")
        lines += [f"  {c}" for c in changes]
    else:
        lines.append(f"changes since {previous.get('period_key')}: none")
    return "\n".join(lines) + "\n"


def hazard_lines(analysis: Analysis) -> list[str]:
    crashing = [h for h in analysis.hazards if h.crashes_without_pv]
    if not analysis.hazards:
        return ["Windows >64-vCPU hazard: no Windows VM shape above 64 vCPUs in this report"]
    head = (f"Windows >64-vCPU hazard: {len(crashing)} of {len(analysis.hazards)} shapes above 64 vCPUs crash at boot "
            f"without PV flush ({BASELINE_MODE}):")
    return [head, format_table(hazard_frame(analysis))]


def search_lines(search: SearchFindings) -> list[str]:
    if not search.found:
        return [f"search: {search.note}"]
    best = search.best[0]
    values = ", ".join(f"{v:.4g}" for v in best["values"])
    lines = [f"search: study {search.study}, {search.completed} completed trials ({', '.join(search.directions)}); "
             f"best trial #{best['number']}: {values} at " + ", ".join(f"{k}={v}" for k, v in best["params"].items())]
    if search.region:
        lines.append("  top region: " + "; ".join(f"{k} {v}" for k, v in search.region.items()))
    if search.importances:
        lines.append("  importances: " + ", ".join(f"{k} {v:.2f}" for k, v in search.importances.items()))
    return lines


__all__ = ["hazard_lines", "search_lines", "summary_text"]
