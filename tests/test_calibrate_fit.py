"""Fitting: known constants are recovered from measurements the engine made; fits resume, repeat, and refuse nonsense.

Measurements come from the engine itself under a known profile, so the right
answer is known without hard-coding any figure. Runs execute in-process through
the same controller and store a Ray fit uses (test_calibrate_cli covers Ray).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest
import yaml

from sweep import InProcessExecutor
from sweep._task import RunOutcome, RunTask
from sweep.calibrate import (
    CalibrationError,
    FitSettings,
    Measurement,
    MeasurementSet,
    SearchSpace,
    base_comments,
    candidate_task,
    default_study_name,
    evaluate,
    execute_candidate_batch,
    fit,
    format_measurements,
    format_report,
    parse_bound,
    parse_measurements,
    profile_yaml,
    rms_relative_error,
    round_significant,
    write_profile,
)
from workers import CostProfile, RunConfig, load_profile, profile_from_mapping, simulate
from workers.profiles import find_profile

#: A small, fast scenario (~20 ms a run): 8 vCPUs on 4 pCPUs, and variations that move different figures.
FAST = dict(guest_os="windows-2016", hv_semantics="kvm-2018", pcpus=4, vcpus=8, threads=8, iterations=8, pages=512)
POINTS = (
    dict(flush_mode="native", enlightenments=False),
    dict(flush_mode="hyperv-pv"),
    dict(flush_mode="native", enlightenments=False, vcpus=4, topology="2x1x2"),
    dict(flush_mode="hyperv-pv", vcpus=16, topology="8x1x2", pages=1024),
)


def renamed(profile: CostProfile, name: str) -> CostProfile:
    return profile_from_mapping({**profile.to_dict(), "name": name}, source=name)


def engine_measurements(profile: CostProfile, points: Sequence[dict] = POINTS, figures: Sequence[str] = ("real_s", "user_s", "sys_s")) -> MeasurementSet:
    """What a user would have measured if the host behaved exactly like ``profile``."""
    measured = []
    for i, extra in enumerate(points, start=1):
        cfg = RunConfig.from_dict({**FAST, **extra})
        result = simulate(cfg, profile)
        measured.append(Measurement(i, 0, cfg, {f: getattr(result, f) for f in figures}, label=f"point {i}"))
    return parse_measurements(format_measurements(measured, comments=[f"simulated under {profile.name}"]))


class CountingBatch:
    """execute_candidate_batch, remembering which runs it computed."""

    def __init__(self) -> None:
        self.computed: list[str] = []

    def __call__(self, tasks: Sequence[RunTask], node: str) -> list[RunOutcome]:
        self.computed += [t.run_id for t in tasks]
        return execute_candidate_batch(tasks, node)


def trial_history(store: Any, study: str) -> list[tuple[str, dict[str, float], float | None]]:
    import optuna

    s = optuna.load_study(study_name=study, storage=store.db_url)
    return [(t.state.name, t.params, t.value) for t in s.get_trials(deepcopy=False)]


@pytest.fixture(scope="module")
def truth() -> CostProfile:
    return renamed(load_profile("literature"), "truth")


@pytest.fixture(scope="module")
def measured(truth: CostProfile) -> MeasurementSet:
    return engine_measurements(truth)


# --- the search space ------------------------------------------------------------------------------

def test_bounds_default_to_a_factor_four_around_the_base_on_a_log_scale(truth: CostProfile) -> None:
    space = SearchSpace.build(truth, ["fault_ns", "hypercall_ns"])
    assert [(b.name, b.low, b.high) for b in space.bounds] == [
        ("fault_ns", truth.fault_ns / 4, truth.fault_ns * 4), ("hypercall_ns", truth.hypercall_ns / 4, truth.hypercall_ns * 4)]
    assert all(d.log for d in space.distributions().values())
    wider = SearchSpace.build(truth, ["fault_ns"], spread=10, overrides={})
    assert wider.bounds[0].high == truth.fault_ns * 10
    explicit = SearchSpace.build(truth, ["fault_ns"], overrides=dict([parse_bound("fault_ns=100:200")]))
    assert (explicit.bounds[0].low, explicit.bounds[0].high) == (100.0, 200.0)
    assert explicit.start() == {"fault_ns": 200.0}  # the base value, clamped into the bounds


def test_a_candidate_is_the_base_with_rounded_constants_and_a_name_from_its_digest(truth: CostProfile) -> None:
    space = SearchSpace.build(truth, ["fault_ns"])
    same = space.candidate(space.start())
    assert same.name == "truth" and same.digest() == truth.digest()  # the base's runs are the sweeps' runs
    other = space.candidate({"fault_ns": 1234.56789})
    assert other.fault_ns == round_significant(1234.56789) == 1234.6
    assert other.name == f"truth~{other.digest()[:12]}"
    assert {k: v for k, v in other.to_dict().items() if k not in ("name", "fault_ns")} == {
        k: v for k, v in truth.to_dict().items() if k not in ("name", "fault_ns")}


@pytest.mark.parametrize(
    ("names", "overrides", "expected"),
    [
        (["faultns"], {}, "did you mean 'fault_ns'"),
        (["fault_ns", "fault_ns"], {}, "named twice"),
        ([], {}, "at least one"),
        (["fault_ns"], {"hypercall_ns": (1.0, 2.0)}, "not fitted"),
        (["fault_ns"], {"fault_ns": (5.0, 1.0)}, "0 < LOW < HIGH"),
    ],
)
def test_a_bad_search_space_is_refused(truth: CostProfile, names: list[str], overrides: dict, expected: str) -> None:
    with pytest.raises(CalibrationError, match=expected):
        SearchSpace.build(truth, names, overrides=overrides)


def test_a_constant_that_is_zero_needs_explicit_bounds(truth: CostProfile) -> None:
    zero = truth.replace(steal_check_ns=0)
    with pytest.raises(CalibrationError, match="--bound steal_check_ns=LOW:HIGH"):
        SearchSpace.build(zero, ["steal_check_ns"])
    assert SearchSpace.build(zero, ["steal_check_ns"], overrides={"steal_check_ns": (1.0, 100.0)}).bounds[0].base == 0
    with pytest.raises(CalibrationError, match="NAME=LOW:HIGH"):
        parse_bound("fault_ns:1:2")


# --- candidate runs and the error ------------------------------------------------------------------

def test_a_candidate_run_carries_its_constants_and_computes_what_simulate_computes(truth: CostProfile) -> None:
    from dataclasses import replace

    cfg = RunConfig.from_dict({**FAST, **POINTS[1]})
    candidate = SearchSpace.build(truth, ["hypercall_ns"]).candidate({"hypercall_ns": 2000.0})
    task = candidate_task(cfg, candidate)
    assert task.config["profile"] == candidate.name and task.costs["hypercall_ns"] == 2000.0
    (outcome,) = execute_candidate_batch([task], "here")
    expected = simulate(cfg.replace(profile=candidate.name), candidate).metrics()
    assert {k: outcome.row[k] for k in expected} == expected and outcome.row["profile"] == candidate.name
    # constants that do not hash to the run_id are refused, as a sweep refuses a refitted profile
    (tampered,) = execute_candidate_batch([replace(task, costs={**task.costs, "hypercall_ns": 2001.0})], "here")
    assert not tampered.ok and "now hashes to" in tampered.error


def test_the_error_is_the_weighted_rms_of_relative_errors(truth: CostProfile) -> None:
    a = Measurement(1, 0, RunConfig(vcpus=8), {"real_s": 2.0, "sys_s": 4.0}, weight=3.0)
    b = Measurement(2, 0, RunConfig(vcpus=4), {"real_s": 1.0})
    ev = evaluate(truth, [a, b], [{"real_s": 2.2, "sys_s": 3.0, "user_s": 9.0}, {"real_s": 1.5}])
    rel = {(r.point.row, r.figure): r.relative for r in ev.residuals}
    assert rel == pytest.approx({(1, "real_s"): 0.1, (1, "sys_s"): -0.25, (2, "real_s"): 0.5})  # unmeasured user_s ignored
    assert ev.error == pytest.approx(rms_relative_error(ev.residuals))
    assert ev.error == pytest.approx(((3 * 0.1**2 + 3 * 0.25**2 + 0.5**2) / 7) ** 0.5)
    assert [(r.point.row, r.figure) for r in ev.worst(2)] == [(2, "real_s"), (1, "sys_s")]
    crashed = evaluate(truth, [a, b], [None, {"real_s": 1.0}])
    assert crashed.crashed == (a.name,) and crashed.error == float("inf")


def test_a_relative_row_is_fitted_as_a_ratio_and_a_weight_zero_figure_is_reported_only(truth: CostProfile) -> None:
    native = Measurement(1, 0, RunConfig(vcpus=12), {"real_s": 21.24, "sys_s": 80.0}, weight=0.0, label="native")
    pv = Measurement(2, 0, RunConfig(vcpus=12, flush_mode="hyperv-pv"), {"real_s": 21.08}, relative_to="native")
    other = Measurement(3, 0, RunConfig(vcpus=8), {"real_s": 3.0, "sys_s": 6.0}, figure_weights={"sys_s": 0.0})
    ev = evaluate(truth, [native, pv, other], [{"real_s": 40.0, "sys_s": 40.0}, {"real_s": 38.0}, {"real_s": 3.3, "sys_s": 3.0}])
    by = {(r.point.row, r.label): r for r in ev.residuals}
    ratio = by[(2, "real_s / row 1")]
    assert (ratio.measured, ratio.simulated) == pytest.approx((21.08 / 21.24, 38.0 / 40.0))
    assert by[(1, "real_s")].weight == by[(1, "sys_s")].weight == by[(3, "sys_s")].weight == 0
    # only the ratio and row 3's real_s count: the 50% misses of weight 0 do not
    assert ev.error == pytest.approx(((ratio.relative**2 + 0.1**2) / 2) ** 0.5)
    assert {(r.point.row, r.figure) for r in ev.worst(5)} == {(2, "real_s"), (3, "real_s")}
    ms = MeasurementSet("m", "0" * 64, (native, pv, other))
    assert (ms.fitted_points, ms.figure_count) == (2, 2)
    assert evaluate(truth, [native, pv, other], [None, {"real_s": 38.0}, {"real_s": 3.3, "sys_s": 3.0}]).crashed == (native.name, pv.name)


# --- fitting -----------------------------------------------------------------------------------------

def test_fit_recovers_known_constants_from_engine_generated_measurements(tmp_store: Any, truth: CostProfile, measured: MeasurementSet) -> None:
    perturbed = renamed(truth.replace(fault_ns=truth.fault_ns * 1.6, touch_user_ns=truth.touch_user_ns * 0.7), "perturbed")
    space = SearchSpace.build(perturbed, ["fault_ns", "touch_user_ns"])
    result = fit(tmp_store, measured, space, InProcessExecutor(batch=execute_candidate_batch),
                 FitSettings(trials=96, parallel_trials=6, target_error=0.003))
    assert result.status == "done" and result.sampler == "cmaes"
    assert result.start is not None and result.start.error > 0.15  # the perturbation is plain to see
    assert result.error < 0.01
    for name in ("fault_ns", "touch_user_ns"):
        assert result.best.profile.cost(name) == pytest.approx(truth.cost(name), rel=0.03), name
    # every simulated figure sits on its measurement
    assert all(abs(r.relative) < 0.02 for r in result.best.residuals)
    assert len(result.best.residuals) == measured.figure_count


def test_fit_refuses_fewer_data_points_than_constants(tmp_store: Any, truth: CostProfile) -> None:
    real_only = engine_measurements(truth, figures=("real_s",))
    names = ["fault_ns", "touch_user_ns", "hypercall_ns", "unmap_page_ns", "free_page_ns"]
    with pytest.raises(CalibrationError, match="4 fitted figure.* cannot determine 5 constants"):
        fit(tmp_store, real_only, SearchSpace.build(truth, names), InProcessExecutor(batch=execute_candidate_batch))
    assert tmp_store.sweeps() == []  # refused before anything was stored


def test_a_fit_continues_where_it_stopped_and_recomputes_nothing(any_store: Any, truth: CostProfile, measured: MeasurementSet) -> None:
    import optuna

    space = SearchSpace.build(renamed(truth.replace(fault_ns=truth.fault_ns * 2), "off"), ["fault_ns"])
    batch = CountingBatch()
    executor = InProcessExecutor(batch=batch)
    first = fit(any_store, measured, space, executor, FitSettings(trials=3))
    assert (first.status, first.trials, first.sampler) == ("done", 3, "tpe")
    assert len(batch.computed) == len(set(batch.computed)) == 3 * len(measured)
    record = any_store.find_sweep(first.study)
    assert record.kind == "calibration" and record.status == "done"
    assert first.study == default_study_name(measured, space)

    second = fit(any_store, measured, space, executor, FitSettings(trials=5))
    assert (second.study, second.trials) == (first.study, 5)
    assert len(batch.computed) == len(set(batch.computed)) == 5 * len(measured)  # trials 1-3 were not recomputed
    assert second.error <= first.error
    assert len(any_store.runs(first.study, status="done")) == 5 * len(measured)

    # a session that died between asking a trial and telling it: the next session finishes that trial
    study = optuna.load_study(study_name=first.study, storage=any_store.db_url)
    orphan = study.ask(space.distributions())
    third = fit(any_store, measured, space, executor, FitSettings(trials=5))
    states = {number: state for number, (state, _, _) in enumerate(trial_history(any_store, first.study))}
    assert states[orphan.number] == "COMPLETE" and third.trials == 6
    assert len(batch.computed) == 6 * len(measured)


def test_a_finished_fit_leaves_its_result_files_compacted(tmp_store: Any, truth: CostProfile, measured: MeasurementSet) -> None:
    """Each batch of trials commits a file; once the fit is done they are merged into one, as a finished sweep's are."""
    space = SearchSpace.build(renamed(truth.replace(fault_ns=truth.fault_ns * 2), "off"), ["fault_ns"])
    batch = CountingBatch()
    result = fit(tmp_store, measured, space, InProcessExecutor(batch=batch), FitSettings(trials=4))
    assert result.status == "done" and len(batch.computed) == 4 * len(measured)  # four trials, simulated one after another
    done = tmp_store.runs(result.study, status="done")
    assert len(done) == 4 * len(measured) and len({r.result_file for r in done}) == 1
    assert tmp_store.check() == []
    rows = tmp_store.results({"run_id": batch.computed})
    assert sorted(rows.column("run_id").to_pylist()) == sorted(batch.computed)  # the merged file holds every run once


def test_same_seed_same_fit_and_another_seed_another_search(tmp_path: Path, truth: CostProfile, measured: MeasurementSet) -> None:
    from storage import open_store

    space = SearchSpace.build(renamed(truth.replace(fault_ns=truth.fault_ns * 1.5, touch_user_ns=truth.touch_user_ns * 0.8), "off"),
                              ["fault_ns", "touch_user_ns"])
    histories = []
    for i, seed in enumerate((7, 7, 8)):
        with open_store(tmp_path / f"store{i}") as store:
            result = fit(store, measured, space, InProcessExecutor(batch=execute_candidate_batch),
                         FitSettings(trials=8, parallel_trials=4, seed=seed))
            histories.append((trial_history(store, result.study), result.best.profile.digest()))
    assert histories[0] == histories[1]
    assert histories[0][0][0] == histories[2][0][0]  # both start from the base values...
    assert histories[0][0][1:] != histories[2][0][1:]  # ...and then search differently


def test_a_named_study_refuses_other_measurements(tmp_store: Any, truth: CostProfile, measured: MeasurementSet) -> None:
    space = SearchSpace.build(truth, ["fault_ns"])
    ex = InProcessExecutor(batch=execute_candidate_batch)
    fit(tmp_store, measured, space, ex, FitSettings(trials=1, study="mine"))
    fewer = parse_measurements(format_measurements(measured.points[:2]))
    with pytest.raises(CalibrationError, match="--study mine: that study fits other inputs"):
        fit(tmp_store, fewer, space, ex, FitSettings(trials=1, study="mine"))


# --- report and profile ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_fit(tmp_path_factory: pytest.TempPathFactory, truth: CostProfile, measured: MeasurementSet) -> Any:
    from storage import open_store

    base = renamed(truth.replace(fault_ns=truth.fault_ns * 1.3), "literature")
    with open_store(tmp_path_factory.mktemp("store")) as store:
        return fit(store, measured, SearchSpace.build(base, ["fault_ns"]), InProcessExecutor(batch=execute_candidate_batch),
                   FitSettings(trials=4))


def test_report_shows_every_measured_figure_the_constants_and_the_worst_residuals(small_fit: Any, measured: MeasurementSet) -> None:
    text = format_report(small_fit, max_error=0.10)
    lines = text.splitlines()
    for r in small_fit.best.residuals:
        row = next(ln for ln in lines if ln.startswith(f"{r.point.row} ") and f" {r.figure} " in ln)
        assert f"{r.relative:+.1%}" in row and f"{r.measured:.5g}" in row and f"{r.simulated:.5g}" in row
    fitted = small_fit.best.profile.fault_ns
    assert any(ln.startswith("fault_ns") and f"{fitted:.5g}" in ln and f"x{fitted / small_fit.space.bounds[0].base:.3f}" in ln
               for ln in lines)
    worst = small_fit.best.worst(1)[0]
    tail = lines[lines.index(next(ln for ln in lines if ln.startswith("worst residuals"))) + 1]
    assert tail.strip().startswith("1.") and worst.figure in tail and f"{worst.relative:+.1%}" in tail
    assert f"{small_fit.error:.2%}" in text and f"base values {small_fit.start.error:.2%}" in text


def test_written_profile_is_the_fitted_candidate_and_records_what_it_was_fitted_to(tmp_path: Path, small_fit: Any, measured: MeasurementSet) -> None:
    out = write_profile(small_fit, tmp_path / "host.yaml", name="host", max_error=0.10,
                        comments=base_comments(find_profile("literature")))
    loaded = load_profile(str(out))
    assert loaded.name == "host" and loaded.digest() == small_fit.best.profile.digest()
    data = yaml.safe_load(out.read_text())
    assert data["fitted_to"]["sha256"] == measured.sha256 and data["fitted_to"]["rows"] == len(measured)
    assert data["fitted_to"]["constants"] == ["fault_ns"] and data["fitted_to"]["base"] == "literature"
    assert data["fitted_to"]["error"] == pytest.approx(small_fit.error, abs=1e-6)
    assert data["fitted_to"]["study"] == small_fit.study
    text = out.read_text()
    assert any(ln.strip().startswith("fault_ns:") and "# fitted: base" in ln for ln in text.splitlines())
    lit = base_comments(find_profile("literature"))
    assert any(ln.strip().startswith("vm_exit_ns:") and lit["vm_exit_ns"] in ln for ln in text.splitlines())
    failing = yaml.safe_load(profile_yaml(small_fit, name="host", max_error=small_fit.error / 2))
    assert failing["fitted_to"]["passed"] is False and failing["description"].startswith("FIT FAILED")
