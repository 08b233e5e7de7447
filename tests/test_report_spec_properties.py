"""Property tests of the report-spec parser and planner: any input gives a plan or one SpecError line."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep._yaml import SpecError
from sweep.report import parse_report_spec, plan_report

VALID: dict[str, Any] = {
    "name": "prop",
    "period": "weekly",
    "hosts": [{"name": "small", "pcpus": 8}, {"name": "big", "pcpus": 32}],
    "vms": [
        {"name": "win", "guest_os": "windows-2016", "vcpus": [4, 8, 16], "topologies": ["smt2", "flat"]},
        {"name": "lin", "guest_os": "linux", "vcpus": 6, "topologies": [{"cores-per-socket": 3}]},
    ],
    "workloads": ["mmap-munmap", "cpu-bound"],
    "flush_modes": ["native", "hyperv-pv", "kvm-pv"],
    "hv_semantics": ["kvm-current", "kvm-2018"],
    "max_vms": 8,
    "base": {"iterations": 2, "pages": 16, "duration_s": 0.01},
    "replicates": 2,
    "slo": {"throughput": 0.8, "real_s_stretch": 1.5, "lat_p99_us": 500, "crash_free": True},
    "pool": {"hosts": 4},
}

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10_000), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(-2, 100), max_size=3), st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_gives_a_plan_or_one_spec_error_line(data: st.DataObject) -> None:
    doc = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        _set(doc, path, data.draw(JUNK))
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        spec = parse_report_spec(text, source="prop.yaml")
        plan = plan_report(spec, "2025-W14")
    except SpecError as exc:
        message = str(exc)
        assert message.startswith("prop.yaml:") and "\n" not in message
        assert "generated sweep" not in message  # errors point at the report spec, not at the sweep made from it
        return
    assert plan.ladders and plan.rungs([(plan.ladders[0], 1)])[1].runs  # a spec that parses and plans has runs


@settings(max_examples=60, deadline=None)
@given(
    pcpus=st.lists(st.integers(1, 48), min_size=1, max_size=3, unique=True),
    vcpus=st.lists(st.integers(1, 40), min_size=1, max_size=3, unique=True),
    hv=st.lists(st.sampled_from(["kvm-current", "kvm-2018"]), min_size=1, max_size=2, unique=True),
    modes=st.sampled_from([["native", "hyperv-pv"], ["native", "kvm-pv"], ["native", "hyperv-pv", "kvm-pv"]]),
    guest=st.sampled_from(["windows-2016", "linux"]),
    max_vms=st.integers(1, 64),
    replicates=st.integers(1, 3),
)
def test_the_plan_has_a_ladder_per_host_shape_handler_and_runnable_flush_mode(
    pcpus: list[int], vcpus: list[int], hv: list[str], modes: list[str], guest: str, max_vms: int, replicates: int
) -> None:
    doc = {
        "name": "count", "hosts": [{"name": f"h{p}", "pcpus": p} for p in pcpus],
        "vms": [{"name": "vm", "guest_os": guest, "vcpus": vcpus, "topologies": ["flat"]}],
        "flush_modes": modes, "hv_semantics": hv, "max_vms": max_vms, "replicates": replicates,
        "base": {"iterations": 1, "pages": 1}, "slo": {"throughput": 0.9},
    }
    try:
        plan = plan_report(parse_report_spec(yaml.safe_dump(doc), source="count.yaml"), "2025-W14")
    except SpecError as exc:  # only kvm-pv with a Windows guest and nothing else to compare
        assert guest == "windows-2016" and "kvm-pv needs a Linux guest" in str(exc)
        return
    runnable = [m for m in modes if not (m == "kvm-pv" and guest != "linux")]
    assert len(plan.ladders) == len(pcpus) * len(vcpus) * len(hv) * len(runnable)
    assert plan.impossible == len(pcpus) * len(vcpus) * len(hv) * (len(modes) - len(runnable))
    assert plan.max_runs == len(plan.ladders) * max_vms * replicates
    assert {(lad.pcpus, lad.vcpus, lad.hv_semantics, lad.flush_mode) for lad in plan.ladders} == {
        (p, v, h, m) for p in pcpus for v in vcpus for h in hv for m in runnable}
    assert all(lad.host_kvm == ("2018" if lad.hv_semantics == "kvm-2018" else "current") for lad in plan.ladders)


#: Typed fields of the report schema, and a value of the wrong kind for each.
TYPED = {
    ("period",): "hourly", ("replicates",): 0, ("slo", "throughput"): 80, ("slo", "real_s_stretch"): 0.5,
    ("slo", "lat_p99_us"): -1, ("slo", "aggregate"): 3, ("slo", "crash_free"): "yes", ("max_vms",): 65,
    ("hv_semantics", 1): "kvm-2019", ("pool", "hosts"): 1, ("hosts", 0, "pcpus"): "eight",
    ("vms", 1, "enlightenments"): "yes", ("workloads", 1): "ebizy",
}


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(sorted(TYPED, key=str)), flow=st.booleans())
def test_a_schema_error_names_the_field_and_its_line(path: tuple, flow: bool) -> None:
    from sweep._yaml import dotted, load_marked

    doc = copy.deepcopy(VALID)
    _set(doc, path, TYPED[path])
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=flow)
    try:
        parse_report_spec(text, source="t.yaml")
    except SpecError as exc:
        assert exc.field == dotted(path) and exc.line == load_marked(text).line(path)
        assert repr(TYPED[path]) in exc.problem or str(TYPED[path]) in exc.problem
    else:
        raise AssertionError(f"{dotted(path)} = {TYPED[path]!r} was accepted")


GOOD = """\
name: cap
hosts: [{name: h, pcpus: 8}]
vms: [{name: w, guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]
max_vms: 8
slo: {throughput: 0.8}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("pcpus: 8", "pcpus: 0"), "r.yaml:2: hosts[0].pcpus: expected a whole number >= 1, got 0"),
        (GOOD.replace("pcpus: 8", "pcpuz: 8"), "r.yaml:2: hosts[0].pcpuz: unknown key; did you mean 'pcpus'?"),
        (GOOD.replace("{name: h, pcpus: 8}", "8"), "r.yaml:2: hosts[0]: expected a mapping with name, pcpus"),
        (GOOD.replace("throughput: 0.8", "throughput: .inf"),
         "r.yaml:5: slo.throughput: the slowest VM's share of one VM alone's ops/s, a fraction in (0, 1] (0.8 is 80 %), got inf"),
        (GOOD.replace("throughput: 0.8", "throughput: 80"),
         "r.yaml:5: slo.throughput: the slowest VM's share of one VM alone's ops/s, a fraction in (0, 1] (0.8 is 80 %), got 80"),
        (GOOD.replace("throughput: 0.8", "real_s_stretch: 0.9"),
         "r.yaml:5: slo.real_s_stretch: run time as a multiple of one VM alone's, a number >= 1 (1.5: at most 50 % longer), got 0.9"),
        (GOOD.replace("throughput: 0.8", "lat_p99_us: 0"), "r.yaml:5: slo.lat_p99_us: shootdown p99 latency in us, a number > 0, got 0"),
        (GOOD.replace("throughput: 0.8", "crash_free: false"),
         "r.yaml:5: slo.crash_free: a crashed VM serves nothing, so a crash fails every SLO; leave crash_free at true (the default)"),
        (GOOD.replace("throughput: 0.8", "thruput: 0.8"), "r.yaml:5: slo.thruput: unknown key; did you mean 'throughput'?"),
        (GOOD.replace("{throughput: 0.8}", "0.8"), "r.yaml:5: slo: expected a mapping of SLO terms, e.g. 'slo: {throughput: 0.8, crash_free: true}'"),
        (GOOD.replace("throughput: 0.8", "metric: lat_p99_us, max: 500"),
         "r.yaml:5: slo.metric: SLO terms are keys of slo now, e.g. 'slo: {throughput: 0.8, crash_free: true}' "
         "(throughput, real_s_stretch, lat_p99_us, crash_free)"),
        (GOOD.replace("max_vms: 8", "overcommit: [1, 2, 4]"),
         "r.yaml:4: overcommit: the report counts VMs per host now, trying vms = 1, 2, ... up to max_vms; remove overcommit "
         "and set e.g. 'max_vms: 16'"),
        (GOOD.replace("max_vms: 8", "max_vms: 0"), "r.yaml:4: max_vms: expected a whole number >= 1 <= 64 (the most VMs per host to try), got 0"),
        (GOOD + "base: {vms: 2}\n", "r.yaml:6: base.vms: the report tries vms = 1 .. max_vms itself; remove it from base"),
        (GOOD + "hv_semantics: [kvm-2018, kvm-2018]\n", "r.yaml:6: hv_semantics[1]: kvm-2018 is listed twice"),
        (GOOD + "pool: {hosts: 1}\n", "r.yaml:6: pool.hosts: a pool that survives a host failure has >= 2 hosts, got 1"),
        (GOOD + "replicates: true\n", "r.yaml:6: replicates: expected a whole number >= 1 (seeds per rung), got True"),
        (GOOD.replace("slo: {throughput: 0.8}\n", ""),
         "r.yaml:1: slo: missing; give the SLO, e.g. 'slo: {throughput: 0.8, crash_free: true}'"),
        (GOOD.replace("[{name: h, pcpus: 8}]", "[]"),
         "r.yaml:2: hosts: expected a non-empty list; list host shapes, e.g. 'hosts: [{name: 2s-24c, pcpus: 48}]'"),
        (GOOD.replace("vcpus: [4], ", ""),
         "r.yaml:3: vms[0].vcpus: missing; this mapping takes name, guest_os, vcpus, topologies, enlightenments, threads"),
        (GOOD + "workloads: [ebizy]\n", "r.yaml:6: workloads[0]: 'ebizy' is not one of mmap-munmap, ebizzy, cpu-bound"),
        (GOOD + "vms2: 1\n", "r.yaml:6: vms2: unknown key; did you mean 'vms'?"),
        (GOOD + '"a\\nb": 1\n', "r.yaml:6: 'a\\nb': unknown key; known: name, description, period, hosts, vms, workloads, "
                                "flush_modes, hv_semantics, max_vms, base, replicates, slo, pool, search"),
        ("[1]\n", "r.yaml:1: a report spec is a mapping with name, hosts, vms and slo"),
    ],
)
def test_schema_errors_read_as_one_line_with_the_fix(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_report_spec(text, source="r.yaml")
    assert str(info.value) == expected
