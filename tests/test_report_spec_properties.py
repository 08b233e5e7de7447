"""Property tests of the report-spec parser and planner: any input gives a plan or one SpecError line."""

from __future__ import annotations

import copy
from typing import Any

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
