"""Property tests for the spec parser and expander (hypothesis)."""

from __future__ import annotations

import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep import SpecError, TopologyRule, expand, parse_spec
from sweep._spec import Impossible
from sweep._where import compile_where
from workers import field_names

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

vcpus_values = st.lists(st.integers(1, 48), min_size=1, max_size=4, unique=True)
topology_values = st.lists(
    st.one_of(
        st.sampled_from(["flat", "smt2", "auto"]),
        st.builds(lambda s, c, t: f"{s}x{c}x{t}", st.integers(1, 4), st.integers(1, 4), st.integers(1, 2)),
        st.builds(lambda c: {"cores-per-socket": c}, st.integers(1, 8)),
        st.builds(lambda s: {"sockets": s}, st.integers(1, 4)),
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def specs(draw: st.DrawFn) -> dict:
    """Random specs over cheap runs; some combinations are impossible on purpose."""
    axes: dict = {"vcpus": draw(vcpus_values)}
    if draw(st.booleans()):
        axes["topology"] = draw(topology_values)
    if draw(st.booleans()):
        axes["overcommit"] = draw(st.lists(st.sampled_from([1, 2, 3, 4, 0.5]), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        axes["flush_mode"] = draw(st.lists(st.sampled_from(["native", "hyperv-pv"]), min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        axes["threads"] = {"from": draw(st.integers(1, 3)), "to": draw(st.integers(3, 6)), "step": draw(st.integers(1, 2))}
    spec: dict = {"name": "prop", "base": {"workload": "cpu-bound", "duration_s": 0.01}, "axes": axes}
    if draw(st.booleans()):
        spec["replicates"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        spec["where"] = draw(st.sampled_from(["vcpus >= pcpus", "vcpus % 2 == 0", "overcommit <= 2", "threads_per_core == 1 or vcpus > 4"]))
    if "flush_mode" in axes and draw(st.booleans()):
        spec["compare"] = {"field": "flush_mode", "baseline": "native", "baseline_overrides": {"enlightenments": False}}
    return spec


@FAST
@given(specs())
def test_expansion_accounts_for_every_combination(spec: dict) -> None:
    text = yaml.safe_dump(spec, sort_keys=False)
    parsed = parse_spec(text, "p.yaml")
    try:
        exp = expand(parsed)
    except SpecError as err:  # only for a value that never fits, or nothing left at all
        assert ("never makes a valid run" in err.problem or "no valid run" in err.problem or "filtered out" in err.problem), str(err)
        return
    runs = {r.run_id: r for r in exp.runs}
    assert len(runs) == len(exp.runs)  # run ids are unique
    assert len(exp.runs) == exp.combinations - exp.impossible - exp.filtered - exp.duplicates + exp.baselines_added
    assert exp.combinations == math.prod(len(a.values) for a in parsed.axes)
    axes = spec["axes"]
    for r in exp.runs:
        c = r.config
        assert c.vcpus in axes["vcpus"]
        s, co, t = c.sockets_cores_threads
        assert s * co * t == c.vcpus
        if "overcommit" in axes:
            assert any(math.isclose(c.vcpus / c.pcpus, oc) for oc in axes["overcommit"])
        if r.baseline_run_id is not None:
            base = runs[r.baseline_run_id]
            assert base.config == c.replace(flush_mode="native", enlightenments=False)
            assert base.baseline_run_id is None
        elif "compare" in spec:
            assert c.flush_mode == "native" and c.enlightenments is False
        if "where" in spec and (r.baseline_run_id is not None or "compare" not in spec):
            assert compile_where(spec["where"], [*field_names(), "overcommit", "sockets", "cores_per_socket", "threads_per_core"]).evaluate(
                {**c.to_dict(), "overcommit": c.vcpus / c.pcpus, "sockets": s, "cores_per_socket": co, "threads_per_core": t}
            )


@FAST
@given(specs(), st.data())
def test_unknown_axis_is_reported_at_its_line(spec: dict, data: st.DataObject) -> None:
    lines = yaml.safe_dump(spec, sort_keys=False).splitlines()
    axes_at = lines.index("axes:")
    end = next((i for i in range(axes_at + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    # insert between two axes (never inside one axis' block list)
    slots = [i for i in range(axes_at + 1, end + 1) if i == end or not lines[i].startswith(("  -", "    "))]
    at = data.draw(st.sampled_from(slots))
    lines.insert(at, "  vcpuz: [1, 2]")
    try:
        parse_spec("\n".join(lines) + "\n", "p.yaml")
    except SpecError as err:
        assert err.line == at + 1 and err.field == "axes.vcpuz" and "did you mean 'vcpus'" in err.problem
    else:
        raise AssertionError("an unknown axis was accepted")


@FAST
@given(st.integers(0, 50), st.integers(0, 60), st.integers(1, 7))
def test_integer_range_is_inclusive(start: int, length: int, step: int) -> None:
    spec = parse_spec(f"name: r\naxes:\n  seed: {{from: {start}, to: {start + length}, step: {step}}}\n")
    assert [v[0] for v in spec.axes[0].values] == list(range(start, start + length + 1, step))


@FAST
@given(st.integers(1, 5000), st.integers(0, 5000))
def test_log2_range_is_the_powers_of_two_inside(lo: int, extra: int) -> None:
    hi = lo + extra
    powers = [2**k for k in range(0, 14) if lo <= 2**k <= hi]
    text = f"name: r\naxes:\n  threads: {{log2: [{lo}, {hi}]}}\n"
    if not powers:
        try:
            parse_spec(text)
        except SpecError as err:
            assert "no power of two" in err.problem
            return
        raise AssertionError("an empty log2 range was accepted")
    assert [v[0] for v in parse_spec(text).axes[0].values] == powers


@FAST
@given(st.integers(1, 64), st.sampled_from(["sockets", "cores_per_socket", "threads_per_core"]), st.integers(1, 16))
def test_topology_rule_fills_the_rest_from_vcpus(vcpus: int, part: str, n: int) -> None:
    rule = TopologyRule(**{part: n})
    try:
        text = rule.resolve(vcpus)
    except Impossible as exc:
        assert vcpus % n != 0 and exc.field == "topology"
        return
    s, c, t = (int(x) for x in text.split("x"))
    assert s * c * t == vcpus
    assert {"sockets": s, "cores_per_socket": c, "threads_per_core": t}[part] == n


_names = ["vcpus", "pcpus", "threads"]
_exprs = st.recursive(
    st.one_of(st.sampled_from(_names), st.integers(0, 9).map(str)),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["+", "-", "*", "%", "//"]), inner),
    ),
    max_leaves=6,
)
_conds = st.builds(lambda a, op, b: f"{a} {op} {b}", _exprs, st.sampled_from(["<", "<=", "==", "!=", ">", ">="]), _exprs)


@FAST
@given(st.lists(_conds, min_size=1, max_size=3), st.sampled_from([" and ", " or "]), st.fixed_dictionaries({n: st.integers(1, 64) for n in _names}))
def test_where_agrees_with_python(conds: list[str], joiner: str, env: dict) -> None:
    text = joiner.join(conds)
    clause = compile_where(text, _names)
    try:
        expected = bool(eval(text, {"__builtins__": {}}, dict(env)))  # noqa: S307 - generated arithmetic only
    except ZeroDivisionError:
        return
    assert clause.evaluate(env) == expected


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_scalars = st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(alphabet="abcxyz-_ 0123", max_size=6), st.none())
_documents = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@FAST
@given(st.dictionaries(_keys, _documents, min_size=1, max_size=5), st.booleans())
def test_marked_yaml_reads_like_pyyaml_and_knows_each_key_line(doc: dict, flow: bool) -> None:
    from sweep._yaml import load_marked

    text = yaml.safe_dump(doc, default_flow_style=flow, sort_keys=False)
    marked = load_marked(text, "d.yaml")
    assert marked.value == yaml.safe_load(text)
    lines = text.splitlines()

    def walk(value: object, path: tuple) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                line = marked.line((*path, key))
                assert 1 <= line <= len(lines) and key in lines[line - 1]
                walk(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*path, i))

    walk(doc, ())
