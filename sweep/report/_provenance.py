"""A report's record (report.json): what it measured, with what, and what it concluded.

The record is what the next report of the same name compares itself with
("what changed since the previous report"), so it keeps the conclusions
(VMs per host, N+1, where PV loses, hazards) next to the provenance (sweeps,
run counts, code version, calibration profile digest, spec hash).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

from sweep.report._analysis import Analysis
from sweep.report._plan import ReportPlan
from sweep.report._search import SearchFindings

#: Bumped when report.json changes shape; older records are still read (missing keys are skipped).
#: 2: capacity in VMs per host (``vms_per_host``, ``n_plus_one``), per Hyper-V handler; ``pv_losses``.
RECORD_VERSION = 2


def build_record(
    plan: ReportPlan,
    analysis: Analysis,
    *,
    sweep_record: Any,
    computing_sweeps: Mapping[str, str],
    computed: int,
    reused: int,
    failed: int,
    rounds: int,
    profile_digest: str,
    search: SearchFindings | None,
    generated_at: dt.datetime,
) -> dict[str, Any]:
    """The report's record as plain JSON-able data.

    Args:
        sweep_record: the store's SweepRecord of the report's sweep (code version, packages, host).
        computing_sweeps: sweep name -> code version, for every sweep that computed a row the report uses.
        computed: runs computed by this report's session.
        reused: runs already done in the store (by an earlier report or any sweep) and not computed again.
        rounds: rounds of rungs this session ran (0: everything was stored).
    """
    spec = plan.spec
    return {
        "record_version": RECORD_VERSION,
        "name": spec.name,
        "description": spec.description,
        "period": spec.period,
        "period_key": plan.period_key,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "spec_source": spec.source,
        "spec_hash": spec.spec_hash,
        "spec_text": spec.text,
        "slo": spec.slo.describe(),
        "pool_hosts": spec.pool_hosts,
        "sweep": plan.sweep_name,
        "sweeps": dict(sorted(computing_sweeps.items())),
        "max_vms": spec.max_vms,
        "runs": {"measured": analysis.runs, "computed": computed, "reused": reused, "failed": failed, "rounds": rounds},
        "code_version": sweep_record.code_version,
        "package_versions": dict(sweep_record.package_versions),
        "host": sweep_record.host,
        "profile": {"name": spec.profile, "digest": profile_digest},
        "capacity": [
            {"key": c.key, "host": c.host, "vm": c.vm, "vcpus": c.vcpus, "topology": c.topology_label, "workload": c.workload,
             "hv_semantics": c.hv_semantics, "host_kvm": c.host_kvm, "flush_mode": c.flush_mode,
             "vms_per_host": c.vms_per_host, "saturated": c.saturated, "n_plus_one": c.n_plus_one, "crashed": c.crashed,
             "failed_at": c.failed_at, "failures": list(c.failures)}
            for c in analysis.capacity
        ],
        "pv_losses": [
            {"host": x.ladder.host, "vm": x.ladder.vm, "vcpus": x.ladder.vcpus, "topology": x.ladder.topology_label,
             "workload": x.ladder.workload, "hv_semantics": x.ladder.hv_semantics, "host_kvm": x.ladder.host_kvm,
             "flush_mode": x.ladder.flush_mode, "pv_vms": x.pv_vms,
             "native_vms": x.native_vms, "at_vms": x.at_vms, "mechanism": x.mechanism, "sentence": x.sentence}
            for x in analysis.losses
        ],
        "hazards": [
            {"vm": h.vm, "vcpus": h.vcpus, "topology": h.topology_label, "resolved": h.topology,
             "outcomes": dict(h.outcomes), "crashes_without_pv": h.crashes_without_pv}
            for h in analysis.hazards
        ],
        "search": None if search is None else {
            "study": search.study, "note": search.note, "completed": search.completed,
            "best": [{"number": b["number"], "values": list(b["values"]), "params": b["params"]} for b in search.best[:1]],
        },
    }


def changes_since(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """What differs from the previous report of the same name, one line each (empty: nothing changed)."""
    if previous is None:
        return []
    out: list[str] = []
    if previous.get("spec_hash") != current["spec_hash"]:
        out.append(f"report spec changed (hash {previous.get('spec_hash')} -> {current['spec_hash']})")
    if previous.get("slo") != current["slo"]:
        out.append(f"SLO {previous.get('slo')} -> {current['slo']}")
    if previous.get("code_version") != current["code_version"]:
        out.append(f"code version {previous.get('code_version')} -> {current['code_version']}")
    old_profile, new_profile = previous.get("profile") or {}, current["profile"]
    if old_profile != new_profile:
        out.append(f"calibration profile {old_profile.get('name')}@{old_profile.get('digest')} -> "
                   f"{new_profile['name']}@{new_profile['digest']}")
    old_runs = _measured(previous.get("runs") or {})
    if old_runs != current["runs"]["measured"]:
        out.append(f"runs measured {old_runs} -> {current['runs']['measured']}")
    if previous.get("record_version", 1) != current["record_version"]:
        out.append(f"record format {previous.get('record_version', 1)} -> {current['record_version']}: "
                   "capacity is counted in VMs per host now, so it is not compared with the previous report")
    else:
        out += _capacity_changes(previous.get("capacity") or [], current["capacity"])
    old_hazard = {_hazard_label(h) for h in previous.get("hazards") or [] if h.get("crashes_without_pv")}
    new_hazard = {_hazard_label(h) for h in current["hazards"] if h["crashes_without_pv"]}
    out += [f"boot crash without PV flush, new: {h}" for h in sorted(new_hazard - old_hazard)]
    out += [f"boot crash without PV flush, gone: {h}" for h in sorted(old_hazard - new_hazard)]
    return out


def _capacity_changes(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[str]:
    before = {c["key"]: c for c in old}
    after = {c["key"]: c for c in new}
    out: list[str] = []
    for key in sorted(after.keys() & before.keys()):
        a, b = before[key], after[key]
        for field, label in (("vms_per_host", "VMs per host"), ("n_plus_one", "VMs per host with one host down")):
            if a.get(field) != b.get(field):
                out.append(f"{key}: {label} {_count(a.get(field), a)} -> {_count(b.get(field), b)}")
    if after.keys() - before.keys():
        out.append(f"{len(after.keys() - before.keys())} shape(s) new in this report")
    if before.keys() - after.keys():
        out.append(f"{len(before.keys() - after.keys())} shape(s) no longer in this report")
    return out


def _measured(runs: Mapping[str, Any]) -> Any:
    """Runs behind a record's conclusions (record format 1 called them ``planned``)."""
    return runs.get("measured", runs.get("planned"))


def _hazard_label(h: Mapping[str, Any]) -> str:
    return f"{h.get('vm')} {h.get('vcpus')} vCPU {h.get('topology')}"


def _count(value: Any, entry: Mapping[str, Any]) -> str:
    if value is None:
        return "none"
    return f"{value}+" if entry.get("saturated") else str(value)


__all__ = ["RECORD_VERSION", "build_record", "changes_since"]
