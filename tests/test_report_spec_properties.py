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
    "overcommit": [1, 2, 4],
    "base": {"iterations": 2, "pages": 16, "duration_s": 0.01},
    "replicates": 2,
    "slo": {"metric": "lat_p99_us", "max": 500},
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    assert plan.expansion.runs  # a spec that parses and plans has runs


@settings(max_examples=60, deadline=None)
@given(
    pcpus=st.lists(st.integers(1, 48), min_size=1, max_size=3, unique=True),
    vcpus=st.lists(st.integers(1, 40), min_size=1, max_size=3, unique=True),
    ratios=st.lists(st.sampled_from([0.5, 1, 1.5, 2, 3, 4]), min_size=1, max_size=4, unique=True),
    replicates=st.integers(1, 3),
)
def test_the_plan_measures_every_fitting_shape_at_every_ratio(pcpus: list[int], vcpus: list[int], ratios: list[float], replicates: int) -> None:
    doc = {
        "name": "count", "hosts": [{"name": f"h{p}", "pcpus": p} for p in pcpus],
        "vms": [{"name": "win", "guest_os": "windows-2016", "vcpus": vcpus, "topologies": ["flat"]}],
        "overcommit": ratios, "replicates": replicates, "base": {"iterations": 1, "pages": 1},
        "slo": {"metric": "real_s", "max": 1.0},
    }
    fits = {(p, v, round(r * p)) for p in pcpus for v in vcpus for r in ratios if round(r * p) >= v}
    try:
        plan = plan_report(parse_report_spec(yaml.safe_dump(doc), source="count.yaml"), "2025-W14")
    except SpecError as exc:  # only when some size fits no host at any ratio
        assert "fit no host" in str(exc)
        assert any(all(round(r * p) < v for p in pcpus for r in ratios) for v in vcpus)
        return
    # one cell per distinct (host, size, total vCPUs); two flush modes; the replicates
    assert len(plan.cells) == len(fits)
    assert len(plan.expansion.runs) == len(fits) * 2 * replicates
    for c in plan.cells:
        assert c.vcpus + c.background_vcpus == round(c.ratio * c.pcpus)


#: Typed fields of the report schema, and a value of the wrong kind for each.
TYPED = {
    ("period",): "hourly", ("replicates",): 0, ("slo", "max"): -1, ("slo", "metric"): "p99", ("slo", "aggregate"): 3,
    ("pool", "hosts"): 1, ("hosts", 0, "pcpus"): "eight", ("vms", 1, "enlightenments"): "yes", ("workloads", 1): "ebizy",
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
overcommit: [1, 2]
slo: {metric: lat_p99_us, max: 500}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("pcpus: 8", "pcpus: 0"), "r.yaml:2: hosts[0].pcpus: expected a whole number >= 1, got 0"),
        (GOOD.replace("pcpus: 8", "pcpuz: 8"), "r.yaml:2: hosts[0].pcpuz: unknown key; did you mean 'pcpus'?"),
        (GOOD.replace("{name: h, pcpus: 8}", "8"), "r.yaml:2: hosts[0]: expected a mapping with name, pcpus"),
        (GOOD.replace("max: 500", "max: .inf"), "r.yaml:5: slo.max: expected a number >= 0, got inf"),
        (GOOD + "pool: {hosts: 1}\n", "r.yaml:6: pool.hosts: a pool that survives a host failure has >= 2 hosts, got 1"),
        (GOOD + "replicates: true\n", "r.yaml:6: replicates: expected a whole number >= 1 (seeds per shape), got True"),
        (GOOD.replace("slo: {metric: lat_p99_us, max: 500}\n", ""),
         "r.yaml:1: slo: missing; give the SLO, e.g. 'slo: {metric: lat_p99_us, max: 500}'"),
        (GOOD.replace("[{name: h, pcpus: 8}]", "[]"),
         "r.yaml:2: hosts: expected a non-empty list; list host shapes, e.g. 'hosts: [{name: 2s-24c, pcpus: 48}]'"),
        (GOOD.replace("vcpus: [4], ", ""),
         "r.yaml:3: vms[0].vcpus: missing; this mapping takes name, guest_os, vcpus, topologies, enlightenments, threads"),
        (GOOD + "workloads: [ebizy]\n", "r.yaml:6: workloads[0]: 'ebizy' is not one of mmap-munmap, ebizzy, cpu-bound"),
        (GOOD + "vms2: 1\n", "r.yaml:6: vms2: unknown key; did you mean 'vms'?"),
        (GOOD + '"a\\nb": 1\n', "r.yaml:6: 'a\\nb': unknown key; known: name, description, period, hosts, vms, workloads, "
                                "flush_modes, overcommit, base, replicates, slo, pool, search"),
        ("[1]\n", "r.yaml:1: a report spec is a mapping with name, hosts, vms, overcommit and slo"),
    ],
)
def test_schema_errors_read_as_one_line_with_the_fix(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_report_spec(text, source="r.yaml")
    assert str(info.value) == expected
