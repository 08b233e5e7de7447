"""VMs per host from judged ladders: the SLO terms, the prefix rule, N+1, the climb's next rung, and report periods.

The ladder evaluation is tested on synthetic result rows (named by the plan's own
run_ids), so these tests fix the report's logic, not the engine's numbers.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweep.report import (
    Alone,
    Rung,
    Slo,
    evaluate,
    failover_vms,
    judge,
    n_plus_one_vms,
    next_rung,
    parse_report_spec,
    period_key,
    plan_report,
    pv_losses,
    vms_limit,
)


def _verdicts(passes: list[bool]) -> list:
    """Verdicts for rungs 1..len(passes): a throughput SLO of 0.5, met or not."""
    slo = Slo(throughput=0.5)
    alone = Alone(100.0, 1.0, "native")
    return [judge(slo, Rung(k, 1, ops_min=90.0 if ok else 10.0, real_s=1.0), alone) for k, ok in enumerate(passes, 1)]


# --- the prefix rule, the cap, N+1 ---------------------------------------------------------------


@given(passes=st.lists(st.booleans(), max_size=12))
def test_the_limit_is_the_last_rung_of_the_unbroken_run_of_passes_from_one_vm(passes: list[bool]) -> None:
    expected = passes.index(False) if False in passes else len(passes)
    assert vms_limit(_verdicts(passes)) == expected


def test_a_pass_above_a_failing_rung_does_not_count_and_a_gap_ends_the_ladder() -> None:
    assert vms_limit(_verdicts([True, False, True, True])) == 1
    three = _verdicts([True, True, True])
    assert vms_limit([three[0], three[2]]) == 1  # rung 2 never measured


@given(passes=st.lists(st.booleans(), min_size=0, max_size=10), cap=st.integers(1, 12))
def test_the_climb_goes_on_one_rung_at_a_time_and_stops_at_the_first_miss_or_the_cap(passes: list[bool], cap: int) -> None:
    passes = passes[:cap]
    verdicts = _verdicts(passes)
    nxt = next_rung(verdicts, cap)
    if False in passes or len(passes) == cap:
        assert nxt is None
    else:
        assert nxt == len(passes) + 1


@settings(max_examples=300)
@given(limit=st.integers(0, 64), hosts=st.integers(2, 12))
def test_n_plus_one_is_the_most_vms_whose_failover_load_is_within_the_limit(limit: int, hosts: int) -> None:
    # From the definition: k per host on N hosts is N*k VMs; on N-1 hosts the fullest holds ceil(N*k/(N-1)).
    fits = [k for k in range(0, limit + 1) if math.ceil(hosts * k / (hosts - 1)) <= limit]
    assert n_plus_one_vms(limit, hosts) == max(fits)
    k = n_plus_one_vms(limit, hosts)
    assert failover_vms(k, hosts) <= limit < failover_vms(k + 1, hosts)
    assert k * hosts <= limit * (hosts - 1)  # the pool's VMs fit on the survivors


def test_failover_spreads_a_failed_hosts_vms_over_the_others() -> None:
    assert failover_vms(3, 4) == 4 and failover_vms(4, 4) == 6 and failover_vms(1, 2) == 2
    with pytest.raises(ValueError, match="pool_hosts"):
        failover_vms(1, 1)


# --- one rung against the SLO ----------------------------------------------------------------


def test_every_slo_term_given_must_hold_and_each_failure_is_named() -> None:
    alone = Alone(200.0, 2.0, "hyperv-pv")
    rung = Rung(4, 2, ops_min=150.0, real_s=3.2, lat_p99_us=90.0)
    assert judge(Slo(throughput=0.75), rung, alone).passed  # 150/200 = 75 %: the floor itself passes
    v = judge(Slo(throughput=0.8, real_s_stretch=1.5, lat_p99_us=80.0), rung, alone)
    assert not v.passed and v.throughput == pytest.approx(0.75) and v.stretch == pytest.approx(1.6)
    assert v.failures == ("slowest VM at 75% of one VM alone (SLO 80%)", "real_s 1.60x one VM alone (SLO 1.5x)",
                          "shootdown p99 90 us (SLO 80 us)")
    assert judge(Slo(real_s_stretch=1.6, lat_p99_us=90.0), rung, alone).passed
    assert judge(Slo(), rung, alone).passed  # crash-free only


def test_a_crash_fails_every_slo_and_an_unknown_reference_is_not_a_pass() -> None:
    crashed = Rung(1, 1, crashed=True, crash_reason="PAGE_FAULT_IN_NONPAGED_AREA")
    v = judge(Slo(), crashed, None)
    assert not v.passed and v.failures == ("crashed (PAGE_FAULT_IN_NONPAGED_AREA)",)
    fine = Rung(2, 1, ops_min=10.0, real_s=1.0, lat_p99_us=5.0)
    assert not judge(Slo(throughput=0.1), fine, None).passed
    assert "one VM alone crashed in every flush mode" in judge(Slo(throughput=0.1), fine, None).failures[0]
    assert judge(Slo(lat_p99_us=10.0), fine, None).passed  # an absolute term needs no reference


def test_one_vm_alone_is_the_best_flush_mode_that_did_not_crash() -> None:
    by_mode = {"native": Rung(1, 1, ops_min=100.0, real_s=1.0), "hyperv-pv": Rung(1, 1, ops_min=40.0, real_s=2.5),
               "kvm-pv": Rung(1, 1, crashed=True, crash_reason="x")}
    assert Alone.best(by_mode) == Alone(100.0, 1.0, "native")
    assert Alone.best({"native": Rung(1, 1, crashed=True)}) is None


def test_a_rung_takes_the_worst_replicate_or_the_mean() -> None:
    runs = pd.DataFrame({"outcome": ["ok", "ok"], "crash_reason": ["", ""], "ops_per_s_min": [80.0, 100.0],
                         "real_s": [1.0, 3.0], "lat_p99_us": [5.0, 9.0]})
    assert Rung.of(2, runs, "worst") == Rung(2, 2, ops_min=80.0, real_s=3.0, lat_p99_us=9.0)
    assert Rung.of(2, runs, "mean") == Rung(2, 2, ops_min=90.0, real_s=2.0, lat_p99_us=7.0)
    runs.loc[1, ["outcome", "crash_reason"]] = ["crash", "PAGE_FAULT_IN_NONPAGED_AREA"]
    assert Rung.of(2, runs, "worst").crashed


# --- whole ladders from synthetic rows ---------------------------------------------------------

SPEC = """\
name: synth
hosts: [{name: h, pcpus: 8}]
vms: [{name: w, guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]
max_vms: 5
replicates: 2
base: {iterations: 2, pages: 16}
slo: {throughput: 0.8}
"""


def _plan(text: str = SPEC):
    return plan_report(parse_report_spec(text, source="synth.yaml"), "2025-W14")


def _rows(plan, throughput: dict[str, list[float]], **counters: dict[str, dict[int, float]]) -> pd.DataFrame:
    """Rows for rungs 1..len(list) per flush mode; the slowest VM's ops/s as given (the second seed a bit better)."""
    out = []
    by_mode = {lad.flush_mode: lad for lad in plan.ladders}
    for mode, values in throughput.items():
        for vms, value in enumerate(values, 1):
            for seed, run_id in enumerate(plan.run_ids(by_mode[mode], vms)):
                crashed = math.isnan(value)
                row = {"run_id": run_id, "outcome": "crash" if crashed else "ok",
                       "crash_reason": "PAGE_FAULT_IN_NONPAGED_AREA" if crashed else "",
                       "ops_per_s_min": math.nan if crashed else value * (1 + 0.01 * seed), "real_s": 1.0, "lat_p99_us": 10.0}
                row.update({name: per_mode.get(mode, {}).get(vms, 0.0) for name, per_mode in counters.items()})
                out.append(row)
    return pd.DataFrame(out)


def _states(plan, rows):
    return {s.ladder.flush_mode: s for s in evaluate(plan, rows)}


def test_the_run_ids_judged_are_the_run_ids_a_round_registers() -> None:
    plan = _plan(SPEC.replace("replicates: 2", "replicates: 3").replace("pages: 16}", "pages: 16, seed: 7}"))
    wanted = [(ladder, vms) for ladder in plan.ladders for vms in (1, 4)]
    sweep, expansion = plan.rungs(wanted)
    assert sweep.name == plan.sweep_name
    assert {r.run_id for r in expansion.runs} == {i for ladder, vms in wanted for i in plan.run_ids(ladder, vms)}
    assert {(r.config.vms, r.config.seed) for r in expansion.runs} == {(v, s) for v in (1, 4) for s in (7, 8, 9)}


def test_each_ladder_is_judged_against_the_best_mode_alone_and_stops_at_its_first_miss() -> None:
    plan = _plan()
    rows = _rows(plan, {"native": [100, 95, 85, 70, 99], "hyperv-pv": [90, 88, 60]})
    states = _states(plan, rows)
    native, pv = states["native"], states["hyperv-pv"]
    assert native.alone is not None and native.alone.flush_mode == "native" and native.alone.ops_per_s == 100
    assert native.limit == 3 and native.failed_at.vms == 4 and native.next_vms is None  # rung 5 passes, but after a miss
    assert [v.vms for v in native.verdicts] == [1, 2, 3, 4]
    assert pv.limit == 2 and pv.failed_at.vms == 3 and pv.finished  # 60 < 0.8 x native's 100
    assert pv.failed_at.failures == ("slowest VM at 60% of one VM alone under native (SLO 80%)",)
    assert not native.saturated and not pv.saturated


def test_an_unfinished_ladder_asks_for_its_next_rung_and_a_full_one_is_saturated() -> None:
    plan = _plan()
    states = _states(plan, _rows(plan, {"native": [100, 99, 98, 97, 96], "hyperv-pv": [100, 99]}))
    assert states["native"].limit == 5 and states["native"].saturated and states["native"].next_vms is None
    assert states["hyperv-pv"].limit == 2 and states["hyperv-pv"].next_vms == 3 and not states["hyperv-pv"].finished


def test_a_rung_counts_only_with_every_replicate_stored_and_waits_for_its_siblings_alone() -> None:
    plan = _plan()
    rows = _rows(plan, {"native": [100, 99], "hyperv-pv": []})
    states = _states(plan, rows)
    assert states["hyperv-pv"].next_vms == 1
    assert states["native"].waiting and states["native"].next_vms is None  # the reference needs PV's vms=1 too
    partial = _rows(plan, {"native": [100, 99], "hyperv-pv": [100]})
    partial = partial[partial["run_id"] != plan.run_ids(plan.ladders[0], 2)[1]]  # native rung 2: one replicate only
    states = _states(plan, partial)
    assert [v.vms for v in states["native"].verdicts] == [1] and states["native"].next_vms == 2


def test_a_crash_alone_gives_zero_vms_and_the_other_mode_is_judged_against_itself() -> None:
    plan = _plan()
    states = _states(plan, _rows(plan, {"native": [math.nan], "hyperv-pv": [50, 45, 30]}))
    assert states["native"].crashed_alone and states["native"].limit == 0 and states["native"].finished
    assert states["hyperv-pv"].alone.flush_mode == "hyperv-pv" and states["hyperv-pv"].limit == 2


def test_rows_of_other_configurations_in_the_sweep_never_count() -> None:
    plan = _plan()
    rows = _rows(plan, {"native": [100, 95], "hyperv-pv": [100, 95]})
    other = _plan(SPEC.replace("pages: 16", "pages: 32"))  # same ladders, other runs (an edited spec, same period)
    stale = _rows(other, {"native": [100, 10, 10], "hyperv-pv": [100, 10, 10]})
    states = _states(plan, pd.concat([rows, stale], ignore_index=True))
    assert states["native"].limit == 2 and states["native"].next_vms == 3


def test_where_pv_fits_fewer_vms_the_sentence_names_the_counter_it_exceeds_native_by_most() -> None:
    plan = _plan(SPEC.replace("max_vms: 5", "max_vms: 5\nhv_semantics: [kvm-current]"))
    rows = _rows(plan, {"native": [100, 95, 90, 50], "hyperv-pv": [100, 70]},
                 fine_flushes={"hyperv-pv": {2: 900.0}, "native": {2: 10.0}},
                 vm_exits={"hyperv-pv": {2: 1200.0}, "native": {2: 600.0}}, hc_flush_list={"hyperv-pv": {2: 60.0}})
    states = evaluate(plan, rows)
    losses = pv_losses(states, rows, lambda s, vms: plan.run_ids(s.ladder, vms))
    assert len(losses) == 1
    loss = losses[0]
    assert (loss.ladder.flush_mode, loss.pv_vms, loss.native_vms, loss.at_vms, loss.mechanism) == ("hyperv-pv", 1, 3, 2, "fine_flushes")
    assert loss.ladder.hv_semantics == "kvm-current" and loss.ladder.host_kvm == "current"
    assert loss.sentence.startswith("h / w 4 vCPU smt2, mmap-munmap, kvm-current handler on KVM current: hyperv-pv fits "
                                    "1 VM per host against native's 3; at 2 VMs slowest VM at 70% of one VM alone (SLO 80%)")
    assert "900 page-by-page flushes per VM from the kvm-current per-vCPU flush FIFO" in loss.sentence
    assert "60 list hypercalls" in loss.sentence and loss.sentence.endswith(".") and "\n" not in loss.sentence

    quiet = _rows(plan, {"native": [100, 95, 90, 50], "hyperv-pv": [100, 70]})
    (loss,) = pv_losses(evaluate(plan, quiet), quiet, lambda s, vms: plan.run_ids(s.ladder, vms))
    assert loss.mechanism == "" and "no counter of the model stands out against native" in loss.sentence
    tie = _rows(plan, {"native": [100, 70], "hyperv-pv": [100, 70]})
    assert pv_losses(evaluate(plan, tie), tie, lambda s, vms: plan.run_ids(s.ladder, vms)) == ()


# --- periods -----------------------------------------------------------------------------------


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
