"""The plain-text summary: printed to stdout so a cron mail or CI log is useful on its own."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sweep._summary import format_table
from sweep.report._analysis import Analysis
from sweep.report._search import SearchFindings
from sweep.report._spec import BASELINE_MODE, ReportSpec
from sweep.report._tables import capacity_frame, hazard_frame, loss_lines, notes

#: What the capacity table's columns and marks mean (the text and the HTML say the same).
TABLE_LEGEND = ("KVM: the host's KVM generation; Hyper-V handler: KVM's HvFlushVirtualAddress* handler the numbers "
                "assume; '+': met at max_vms, the limit may be higher; 0: not even one VM alone; crash: at boot")


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
    runs = record["runs"]
    lines = [
        f"flushsweep report {spec.name}, period {record['period_key']} ({spec.period}): {location}",
        f"SLO: {spec.slo.describe()}",
        pool_line(spec),
        f"runs: {runs['measured']} measured ({runs['computed']} computed now, {runs['reused']} reused from the store, "
        f"{runs['failed']} failed) in {runs['rounds']} round(s) of rungs; sweep {record['sweep']}",
        "",
        f"VMs per host meeting the SLO ({TABLE_LEGEND}):",
        format_table(capacity_frame(spec, analysis)),
        "",
        *loss_text(analysis),
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


def pool_line(spec: ReportSpec) -> str:
    n = spec.pool_hosts
    return (f"VMs tried: 1 .. {spec.max_vms} per host, up to the first that misses the SLO; 1 of {n} down: a pool of {n} "
            f"hosts still meets the SLO with one host down (k per host -> ceil({n}k/{n - 1}) on the fullest survivor)")


def loss_text(analysis: Analysis) -> list[str]:
    lines = loss_lines(analysis)
    if not lines:
        return ["Where PV flush loses: nowhere; it fits at least as many VMs as native in every shape."]
    return [f"Where PV flush fits fewer VMs than native ({len(lines)}):", *(f"  - {line}" for line in lines)]


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


__all__ = ["TABLE_LEGEND", "hazard_lines", "loss_text", "pool_line", "search_lines", "summary_text"]
