"""Search specs and expressions: every mistake is one line naming the file, line and field; nothing runs code."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep import SpecError
from sweep.search import ExprError, compile_expr, load_search_spec, parse_search_spec
from sweep.search._expr import Scope
from sweep.search._trial import evaluate, plan_trial

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
name: ok
base: {workload: mmap-munmap, iterations: 4, vcpus: 8}
space:
  overcommit: [1, 2, 4]
  pages: {low: 16, high: 1024, log: true}
  sleep_max_us: {low: 0, high: 200, step: 50}
objectives: [benefit_real]
"""


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_search_spec(text, source="s.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("pages:", "pagez:"), "s.yaml:5: space.pagez: unknown RunConfig field; did you mean 'pages'?"),
        (GOOD.replace("low: 16, high: 1024", "low: 1024, high: 16"), "s.yaml:5: space.pages.high: must be >= low (1024), got 16"),
        (GOOD.replace("low: 16, high: 1024, log: true", "low: 0, high: 1024, log: true"), "s.yaml:5: space.pages.low: a log range needs low > 0, got 0"),
        (GOOD.replace("step: 50", "step: 50, log: true").replace("low: 0, high: 200", "low: 1, high: 201"),
         "s.yaml:6: space.sleep_max_us.step: step and log: true exclude each other; drop one"),
        (GOOD.replace("high: 200, step: 50", "high: 210, step: 50"), "s.yaml:6: space.sleep_max_us.high: 210 is not low + a multiple of step 50; use 200"),
        (GOOD.replace("overcommit: [1, 2, 4]", "overcommit: [1, 2, 0]"), "s.yaml:4: space.overcommit[2]: overcommit is host vCPUs / pcpus, a number > 0; got 0"),
        (GOOD.replace("overcommit: [1, 2, 4]", "guest_os: [linux, windows-2019]"), "s.yaml:4: space.guest_os[1]: 'windows-2019' is not one of windows-2016, linux"),
        (GOOD.replace("overcommit: [1, 2, 4]", "topology: {low: 1, high: 2}"), "s.yaml:4: space.topology: topology is not numeric; list its choices, e.g. [flat, smt2, {cores-per-socket: 4}]"),
        (GOOD.replace("overcommit: [1, 2, 4]", "flush_mode: [native, hyperv-pv]"), "s.yaml:4: space.flush_mode: flush mode is what each trial compares; set compare.baseline and compare.pv"),
        (GOOD.replace("overcommit: [1, 2, 4]", "vcpus: [4, 8]"), "s.yaml:4: space.vcpus: vcpus is also in base; keep it in one place"),
        (GOOD.replace("overcommit: [1, 2, 4]", "ple_window_us: {low: 0, high: 8}"), "s.yaml:4: space.ple_window_us.low: must be >= 1, got 0"),
        (GOOD.replace("overcommit: [1, 2, 4]", "threads: {low: 1, high: 8, stpe: 2}"), "s.yaml:4: space.threads.stpe: unknown key; did you mean 'step'?"),
        (GOOD.replace("overcommit: [1, 2, 4]", "overcommit: [1, 2, 1]"), "s.yaml:4: space.overcommit[2]: 1 is listed twice"),
        (GOOD.replace("objectives: [benefit_real]", "objectives: [benefit_rael]"), "s.yaml:7: objectives[0]: unknown name 'benefit_rael' in 'benefit_rael'; did you mean 'benefit_real'?"),
        (GOOD.replace("objectives: [benefit_real]", "objectives: [sys_s]"), "s.yaml:7: objectives[0]: 'sys_s' is measured per run in 'sys_s'; write pv.sys_s or native.sys_s"),
        (GOOD.replace("objectives: [benefit_real]", "objectives: [pv.outcome]"), "s.yaml:7: objectives[0]: 'pv.outcome' gives text, not a number; an objective must be numeric (e.g. benefit_sys)"),
        (GOOD.replace("objectives: [benefit_real]", "objectives: [__import__('os').getpid()]"), "s.yaml:7: objectives[0]: __import__('os').getpid() is not allowed in \"__import__('os').getpid()\"; functions: min, max, abs, log, log2, log10, sqrt"),
        (GOOD + "constraints: [pv.lat_p99_us < 'ok']\n", "s.yaml:8: constraints[0]: \"pv.lat_p99_us < 'ok'\" compares text with a number; compare outcome with == ok, numbers with <, <=, ..."),
        (GOOD + "sampler: tpee\n", "s.yaml:8: sampler: 'tpee' is not a sampler; did you mean 'tpe'?"),
        (GOOD + "sampler: {name: tpe, n_startup: 3}\n", "s.yaml:8: sampler.n_startup: not an option of TPESampler; did you mean 'n_startup_trials'?"),
        (GOOD.replace("pages: {low: 16, high: 1024, log: true}", "duration_s: {low: 0.1, high: 1.0}") + "sampler: grid\n",
         "s.yaml:5: space.duration_s: grid needs discrete values; give this range a step or list its values"),
        (GOOD + "compare: {pv: native}\n", "s.yaml:8: compare.pv: 'native' is not a PV flush mode; use one of hyperv-pv, kvm-pv"),
        (GOOD + "compare: {pv: kvm-pv}\n", "s.yaml:8: compare.pv: no PV run is possible: kvm-pv needs a Linux guest (KVM_FEATURE_PV_TLB_FLUSH), guest_os is windows-2016; use hyperv-pv"),
        (GOOD + "compare: {baseline_overrides: {topology: flat}}\n", "s.yaml:8: compare.baseline_overrides.topology: a baseline must keep the topology of the run it is paired with"),
        (GOOD + "trials: 0\n", "s.yaml:8: trials: expected a whole number >= 1 (trials to evaluate), got 0"),
        (GOOD + "direction: up\n", "s.yaml:8: direction: 'up' is not one of maximize, minimize"),
        (GOOD.replace("name: ok", "name: 'a b'"), "s.yaml:1: name: 'a b' is not a search name; use letters, digits, '_', '.', '-'"),
        (GOOD.replace("objectives: [benefit_real]\n", ""), "s.yaml:1: objectives: missing; e.g. objectives: [benefit_sys] (native.sys_s / pv.sys_s, maximized)"),
    ],
)
def test_invalid_spec_is_one_line_naming_file_line_and_field(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_topology_rule_needs_only_one_searched_vcpus_it_divides() -> None:
    ok = "name: t\nspace:\n  vcpus: [6, 8]\n  topology: [flat, {cores-per-socket: 3}]\nobjectives: [benefit_sys]\n"
    assert parse_search_spec(ok).space.by_name("topology").labels == ("flat", "cores-per-socket=3")
    bad = ok.replace("vcpus: [6, 8]", "vcpus: [4, 8]")
    assert error_of(bad) == "s.yaml:4: space.topology[1]: {cores-per-socket: 3} does not divide vcpus 4"


def test_shipped_search_specs_parse() -> None:
    for path in sorted((REPO / "configs" / "search").glob("*.yaml")):
        spec = load_search_spec(path)
        assert spec.trials >= 1 and spec.space.names


def test_pareto_spec_pairs_native_without_enlightenments() -> None:
    spec = load_search_spec(REPO / "configs" / "search" / "pareto.yaml")
    plan = plan_trial(spec, {"vcpus": 32, "topology": "smt2", "overcommit": 4.0, "threads": 8}, lambda c: c.content_hash())
    pv, base = plan.pairs[0]
    assert (pv.config.flush_mode, pv.config.enlightenments, pv.config.pcpus) == ("hyperv-pv", True, 8)
    assert (base.config.flush_mode, base.config.enlightenments) == ("native", False)
    assert pv.baseline_run_id == base.run_id and [p.config.seed for p, _ in plan.pairs] == [0, 1]


# --- expressions -------------------------------------------------------------------


def scope(**bare: float) -> Scope:
    runs = {"sys_s": 2.0, "real_s": 1.0, "lat_p99_us": 400.0, "outcome": "ok"}
    return Scope({"outcome": "ok", **bare}, {"pv": runs, "native": {**runs, "sys_s": 6.0}})


def test_expressions_read_pv_and_native_and_divide_like_ieee() -> None:
    assert compile_expr("native.sys_s / pv.sys_s", want="number").evaluate(scope()) == 3.0
    assert compile_expr("baseline.sys_s - pv.sys_s", want="number").evaluate(scope()) == 4.0
    assert compile_expr("max(pv.real_s, 0.5) * 2", want="number").evaluate(scope()) == 2.0
    assert math.isinf(compile_expr("native.sys_s / 0", want="number").evaluate(scope()))
    assert math.isnan(compile_expr("(pv.real_s - 1) / 0", want="number").evaluate(scope()))


def test_constraint_violation_is_the_distance_for_comparisons_and_one_otherwise() -> None:
    assert compile_expr("pv.lat_p99_us <= 500", want="condition").violation(scope()) == 0.0
    assert compile_expr("pv.lat_p99_us <= 150", want="condition").violation(scope()) == 250.0
    assert compile_expr("pv.lat_p99_us > 400", want="condition").violation(scope()) > 0.0  # a strict miss at equality
    assert compile_expr("outcome == ok", want="condition").violation(scope()) == 0.0
    assert compile_expr("outcome == crash", want="condition").violation(scope()) == 1.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="abcdeknopstuvx_.()[]{}+-*/%<>=!'\" 0123456789,:;lambda", max_size=40))
def test_any_text_either_compiles_or_raises_expr_error(text: str) -> None:
    try:
        compile_expr(text, want="number")
    except ExprError as exc:
        assert "\n" not in str(exc)


@st.composite
def arithmetic(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        return str(draw(st.integers(min_value=-50, max_value=50)))
    op = draw(st.sampled_from(["+", "-", "*", "/"]))
    return f"({draw(arithmetic(depth + 1))} {op} {draw(arithmetic(depth + 1))})"


@settings(max_examples=200, deadline=None)
@given(arithmetic())
def test_arithmetic_matches_python_where_python_defines_it(text: str) -> None:
    ours = compile_expr(text, want="number").evaluate(scope())
    try:
        expected = float(eval(text))  # the test's own generated arithmetic, never user input
    except ZeroDivisionError:
        assert math.isinf(ours) or math.isnan(ours) or ours == ours  # defined by IEEE 754 instead
        return
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-12)


@st.composite
def int_range(draw: st.DrawFn) -> tuple[int, int, int]:
    low = draw(st.integers(min_value=1, max_value=64))
    step = draw(st.integers(min_value=1, max_value=8))
    count = draw(st.integers(min_value=1, max_value=10))
    return low, low + step * (count - 1), step


@settings(max_examples=60, deadline=None)
@given(int_range(), st.lists(st.sampled_from([1, 2, 3, 4, 8]), min_size=1, max_size=4, unique=True))
def test_every_point_of_a_valid_space_builds_a_paired_run(threads: tuple[int, int, int], overcommit: list[int]) -> None:
    low, high, step = threads
    spec = parse_search_spec(
        f"name: p\nbase: {{workload: cpu-bound, duration_s: 0.001, vcpus: 8}}\n"
        f"space:\n  threads: {{low: {low}, high: {high}, step: {step}}}\n  overcommit: {overcommit}\nobjectives: [benefit_ops]\n"
    )
    assert spec.space.grid_size() == ((high - low) // step + 1) * len(overcommit)
    for t in spec.space.by_name("threads").grid():
        for o in overcommit:
            plan = plan_trial(spec, {"threads": t, "overcommit": o}, lambda c: c.content_hash())
            pv, base = plan.pairs[0]
            assert pv.config.threads == t and pv.config.pcpus == max(1, round(8 / o)) and base.config.flush_mode == "native"
            assert spec.space.params_of(pv.config) == {"threads": t, "overcommit": o}


def test_a_trial_whose_baseline_crashed_is_infeasible_and_a_ratio_over_zero_fails_it() -> None:
    from workers import load_profile, run_key, simulate

    spec = parse_search_spec(
        "name: c\nbase: {workload: cpu-bound, duration_s: 0.002, guest_os: windows-2016, threads: 8, topology: smt2}\n"
        "space: {vcpus: [72]}\ncompare: {pv: hyperv-pv}\nobjectives: [benefit_real]\nconstraints: [outcome == ok]\n"
    )
    profile = load_profile("literature")
    key = lambda c: run_key(c, profile)  # noqa: E731
    plan = plan_trial(spec, {"vcpus": 72}, key)
    rows = {r.run_id: {"run_id": r.run_id, **simulate(r.config, profile).to_dict()} for r in plan.runs}
    ev = evaluate(spec, plan, rows)
    assert rows[plan.pairs[0][1].run_id]["outcome"] == "crash"  # WS2016 > 64 vCPUs, SMT, enlightened, no PV flush
    assert ev.state == "complete" and ev.values == (0.0,) and ev.outcome == "crash" and not ev.feasible
    ops = parse_search_spec(spec.text.replace("objectives: [benefit_real]", "objectives: [benefit_ops]"))
    failed = evaluate(ops, plan, rows)
    assert failed.state == "failed" and "objective benefit_ops is inf" in failed.error and "native run: outcome crash" in failed.error
    assert failed.constraints == {"outcome == ok": 1.0}
