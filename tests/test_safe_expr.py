"""The one bounded expression evaluator behind ``where`` filters and search objectives: any text ends fast or fails in one line."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep import SpecError, expand, parse_spec
from sweep._safe_expr import MAX_LENGTH, ExprError
from sweep._where import compile_where
from sweep.search import compile_expr
from sweep.search._expr import Scope

#: Far above what one evaluation takes (microseconds); only a runaway computation gets near it.
RUNAWAY_S = 2.0
NAMES = ["vcpus", "pcpus", "threads", "flush_mode"]
ENV = {"vcpus": 128, "pcpus": 12, "threads": 65, "flush_mode": "native"}

_leaves = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(["pv.sys_s", "native.real_s", "benefit_sys"]),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["10 ** 9", "9" * 300, "1e308", "0", "0.5", "'x'", "'native'", "true", "[1, 2]"]),
)
_binary = ["+", "-", "*", "/", "//", "%", "**", "<", "<=", "==", "!=", ">", ">=", "and", "or", "in"]
_expressions = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(_binary), inner),
        st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["-", "not ", "+"]), inner),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["log", "sqrt", "abs", "max"]), inner),
    ),
    max_leaves=25,
)


def _scope() -> Scope:
    run = {"sys_s": 2.0, "real_s": 1.0, "lat_p99_us": 400.0, "outcome": "ok"}
    bare = {"vcpus": 128, "pcpus": 12, "threads": 65, "flush_mode": "native", "benefit_sys": 1.5, "outcome": "ok"}
    return Scope(bare, {"pv": run, "native": {**run, "sys_s": 6.0}})


def _bounded(fn) -> None:
    start = time.perf_counter()
    try:
        fn()
    except ExprError as exc:
        assert "\n" not in str(exc) and str(exc)
    assert time.perf_counter() - start < RUNAWAY_S


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions)
def test_any_expression_finishes_or_fails_in_one_line_as_a_filter_and_as_an_objective(text: str) -> None:
    def as_filter() -> None:
        compile_where(text, NAMES).evaluate(ENV)

    def as_objective() -> None:
        compile_expr(text, want="condition").evaluate(_scope())

    _bounded(as_filter)
    _bounded(as_objective)


def test_a_huge_power_in_where_does_not_hang_expand() -> None:
    spec = parse_spec("name: p\nbase: {workload: cpu-bound, duration_s: 0.01}\naxes: {vcpus: [2, 4]}\nwhere: \"vcpus ** 10 ** 9 > 1\"\n")
    start = time.perf_counter()
    runs = expand(spec).runs
    assert time.perf_counter() - start < RUNAWAY_S * 5
    assert sorted(r.config.vcpus for r in runs) == [2, 4]  # 2 ** 1e9 is inf, and inf > 1


def test_arithmetic_overflows_to_infinity_with_its_sign() -> None:
    assert compile_where("vcpus ** 10 ** 9 > 1e308", NAMES).evaluate(ENV)
    assert compile_where("-vcpus ** 3 ** 5 < -1e308", NAMES).evaluate(ENV)
    assert math.isinf(compile_expr("pv.sys_s ** 1e9", want="number").evaluate(_scope()))


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("'x' * 10 ** 9 == 'x'", "'x' is not a number; arithmetic needs numbers"),
        ("flush_mode < 3", "cannot compare 'native' with 3"),
        ("-flush_mode < 3", "flush_mode is 'native', not a number"),
    ],
)
def test_what_cannot_be_computed_is_a_spec_error_at_the_where_line(where: str, words: str) -> None:
    spec = parse_spec(f"name: p\nbase: {{workload: cpu-bound, duration_s: 0.01}}\naxes: {{vcpus: [2]}}\nwhere: \"{where}\"\n", "s.yaml")
    with pytest.raises(SpecError) as info:
        expand(spec)
    assert str(info.value).startswith("s.yaml:4: where: ") and words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("vcpus > " + "1 + " * 200 + "1", f"at most {MAX_LENGTH}"),
        ("-" * 60 + "vcpus > 1", "nests deeper"),
        ("vcpus > " + "9" * 400, "too large a number"),
        ("vcpus > (", "is not an expression"),
    ],
)
def test_oversized_or_broken_filters_are_refused_when_the_spec_is_parsed(text: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(f"name: p\naxes: {{vcpus: [2]}}\nwhere: '{text}'\n", "s.yaml")
    assert str(info.value).startswith("s.yaml:3: where: ") and words in str(info.value)
