"""Consolidation-ratio rules and report periods: what a capacity plan is computed from."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweep.report import Point, failover_ratio, failover_safe_ratio, highest_ratio, period_key, value_at

RATIOS = st.lists(st.sampled_from([0.5, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]), min_size=1, max_size=9, unique=True)


@given(ratios=RATIOS, slope=st.floats(0.1, 100.0), limit=st.floats(0.0, 500.0))
def test_highest_ratio_of_a_rising_metric_is_the_last_ratio_under_the_limit(ratios: list[float], slope: float, limit: float) -> None:
    points = [Point(r, slope * r) for r in ratios]
    under = [r for r in ratios if slope * r <= limit]
    assert highest_ratio(points, limit) == (max(under) if under else None)


def test_a_failing_ratio_caps_the_answer_even_if_a_higher_one_passes_again() -> None:
    points = [Point(1.0, 100.0), Point(2.0, 900.0), Point(3.0, 200.0)]  # noisy: 3 passes, 2 does not
    assert highest_ratio(points, 500.0) == 1.0


def test_a_crash_meets_no_slo_and_an_unknown_value_is_not_a_pass() -> None:
    assert highest_ratio([Point(1.0, None, crashed=True), Point(2.0, None, crashed=True)], 1e9) is None
    assert highest_ratio([Point(1.0, 10.0), Point(2.0, None)], 1e9) == 1.0


@given(ratios=RATIOS, a=st.floats(-100, 100), b=st.floats(-100, 100), t=st.floats(0, 1))
def test_value_at_is_exact_for_a_linear_metric_inside_the_measured_range(ratios: list[float], a: float, b: float, t: float) -> None:
    points = [Point(r, a + b * r) for r in ratios]
    lo, hi = min(ratios), max(ratios)
    x = lo + t * (hi - lo)
    value, crashed = value_at(points, x)
    assert not crashed
    assert value == pytest.approx(a + b * x, abs=1e-6)


def test_value_at_is_unknown_outside_the_range_and_crashed_next_to_a_crash() -> None:
    points = [Point(1.0, 10.0), Point(2.0, None, crashed=True), Point(4.0, 30.0)]
    assert value_at(points, 0.5) == (None, False)
    assert value_at(points, 5.0) == (None, False)
    assert value_at(points, 1.5) == (None, True)
    assert value_at(points, 3.0) == (None, True)
    assert value_at(points, 1.0) == (10.0, False)


@settings(max_examples=200)
@given(ratios=RATIOS, slope=st.floats(0.1, 100.0), limit=st.floats(1.0, 800.0), hosts=st.integers(2, 10))
def test_failover_safe_ratio_survives_one_host_down_within_the_measured_range(
    ratios: list[float], slope: float, limit: float, hosts: int
) -> None:
    points = [Point(r, slope * r) for r in ratios]
    top = max(ratios)
    # Brute force, from the definition: r meets the SLO, and so does r*N/(N-1), which must be measured or between measured ratios.
    safe = [r for r in ratios
            if slope * r <= limit and r * hosts / (hosts - 1) <= top + 1e-9 and slope * r * hosts / (hosts - 1) <= limit + 1e-9]
    expected = max(safe) if safe else None
    assert failover_safe_ratio(points, limit, hosts) == expected
    if expected is not None:
        assert expected <= highest_ratio(points, limit)  # type: ignore[operator]


def test_failover_ratio_spreads_a_failed_hosts_vms_over_the_others() -> None:
    assert failover_ratio(3.0, 4) == pytest.approx(4.0)
    assert failover_ratio(1.0, 2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="pool_hosts"):
        failover_ratio(1.0, 1)


@given(day=st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)))
def test_every_day_of_an_iso_week_has_the_weeks_key_and_the_next_week_another(day: dt.date) -> None:
    monday = day - dt.timedelta(days=day.weekday())
    keys = {period_key("weekly", monday + dt.timedelta(days=i)) for i in range(7)}
    assert keys == {period_key("weekly", day)}
    assert period_key("weekly", monday + dt.timedelta(days=7)) > period_key("weekly", day)
    iso = day.isocalendar()
    assert period_key("weekly", day) == f"{iso.year}-W{iso.week:02d}"


@given(a=st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)), b=st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)))
def test_period_keys_sort_in_time_order(a: dt.date, b: dt.date) -> None:
    first, second = sorted((a, b))
    for kind in ("daily", "weekly", "monthly"):
        assert period_key(kind, first) <= period_key(kind, second)
    assert (period_key("monthly", a) == period_key("monthly", b)) == ((a.year, a.month) == (b.year, b.month))
    assert (period_key("daily", a) == period_key("daily", b)) == (a == b)


def test_iso_week_one_can_start_in_december() -> None:
    assert period_key("weekly", dt.date(2024, 12, 30)) == "2025-W01"
    assert period_key("weekly", dt.date(2021, 1, 3)) == "2020-W53"
