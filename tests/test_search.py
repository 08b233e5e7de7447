"""Searches on the in-process executor: real simulation, real Optuna study in the store's database, no Ray."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from sweep import InProcessExecutor, execute_sweep, expand, parse_spec, start_sweep
from sweep.search import (
    NameTaken,
    OptunaSearch,
    best_trials,
    importances,
    load_search_spec,
    parse_search_spec,
    pareto_front,
    run_search,
    summary_text,
)
from sweep_fixtures import REPO, profile_dir, sweep_store  # noqa: F401 - fixtures

#: A ~5 ms paired trial: WS2016, cpu-bound work (no shootdowns), so PV flush changes only what crashes.
CPU = "{workload: cpu-bound, duration_s: 0.002, guest_os: windows-2016, threads: 8, topology: smt2}"
CPU8 = CPU.replace("}", ", vcpus: 8}")
#: mmap/munmap storm on 8 vCPUs: ~20 ms per run.
STORM = "{guest_os: windows-2016, workload: mmap-munmap, vcpus: 8, iterations: 4}"


def trials_by_state(study: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for t in study.get_trials(deepcopy=False):
        out.setdefault(t.state.name, []).append(t)
    return out


def stored_rows(store: Any, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in store.results({"run_id": run_ids}).to_pylist()}


def test_quickstart_search_finds_the_known_best_region(sweep_store: Any) -> None:
    from workers import RunConfig, simulate

    spec = dataclasses.replace(load_search_spec(REPO / "configs" / "search" / "quickstart.yaml"), parallel=1)
    session = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    study = session.search.study
    assert session.report.status == "done" and session.report.told == {"complete": spec.trials}
    best = best_trials(study, spec, top=1)[0]
    # It really is the best region of the simulator: every cell of the space, simulated here.
    cell_benefit = {}
    for vms in (1, 2, 3):
        for vcpus in (4, 8):
            for alloc in ("malloc", "mmap"):
                cfg = RunConfig(guest_os="linux", workload="ebizzy", pcpus=8, duration_s=0.05, host_kvm="2018",
                                vms=vms, vcpus=vcpus, ebizzy_alloc=alloc)
                native, pv = simulate(cfg), simulate(cfg.replace(flush_mode="kvm-pv"))
                cell_benefit[(vms, vcpus, alloc)] = pv.ops_per_s / native.ops_per_s
    assert (best.params["vms"], best.params["vcpus"], best.params["ebizzy_alloc"]) == max(cell_benefit, key=cell_benefit.get)
    assert best.values[0] == pytest.approx(max(cell_benefit.values()))
    # The trial's runs are stored like sweep runs and its value is the ratio of their stored metrics.
    runs = best.user_attrs["runs"]
    rows = stored_rows(sweep_store, runs["pv"] + runs["native"])
    assert set(rows) == set(runs["pv"] + runs["native"])
    assert best.values[0] == pytest.approx(rows[runs["pv"][0]]["ops_per_s"] / rows[runs["native"][0]]["ops_per_s"])
    assert rows[runs["pv"][0]]["baseline_run_id"] == runs["native"][0]
    assert sweep_store.find_sweep(spec.name).kind == "search" and sweep_store.find_sweep(spec.name).status == "done"
    assert sweep_store.progress(spec.name)["done"] == len({r for t in study.trials for r in t.user_attrs["runs"]["pv"] + t.user_attrs["runs"]["native"]})
    text = summary_text(study, spec)
    assert "best configurations (maximize benefit_ops" in text and "parameter importances (benefit_ops, fANOVA): " in text
    # the importances agree with the simulator: of the allocator and the VM count, the one whose cells differ more ranks higher
    spread = {
        "ebizzy_alloc": _spread({a: sum(v for k, v in cell_benefit.items() if k[2] == a) / 6 for a in ("malloc", "mmap")}),
        "vms": _spread({n: sum(v for k, v in cell_benefit.items() if k[0] == n) / 4 for n in (1, 2, 3)}),
    }
    scores = importances(study, spec)["benefit_ops"]
    assert isinstance(scores, dict)
    assert (scores["ebizzy_alloc"] > scores["vms"]) == (spread["ebizzy_alloc"] > spread["vms"]), (scores, spread)
    shown = best_trials(study, spec)
    assert len({tuple(sorted(t.params.items())) for t in shown}) == len(shown)  # each configuration once


def _spread(means: dict) -> float:
    return max(means.values()) - min(means.values())


def test_runs_are_shared_with_sweeps_and_a_sweep_seeds_the_study(sweep_store: Any) -> None:
    sweep = parse_spec(
        f"name: grid\nbase: {STORM}\naxes:\n  overcommit: [1, 2, 4]\n  pages: [16, 256]\n  flush_mode: [native, hyperv-pv]\n"
        "compare: flush_mode\n"
    )
    start_sweep(sweep_store, sweep, expand(sweep))
    assert execute_sweep(sweep_store, "grid", InProcessExecutor()).status == "done"
    spec = parse_search_spec(
        f"name: seeded\nbase: {STORM}\nspace:\n  overcommit: [1, 2, 4]\n  pages: [16, 256]\nobjectives: [benefit_sys]\n"
        "trials: 4\nsampler: random\n"
    )
    session = run_search(sweep_store, spec, InProcessExecutor(), seed_from="grid", heartbeat_s=1)
    assert (session.seed.queued, session.seed.outside, session.seed.incomplete) == (6, 0, 0)
    assert session.report.seeded == 6 and session.report.trials == 4
    assert session.report.runs_simulated == 0  # every configuration of the space is in the sweep: nothing simulated again
    study = session.search.study
    seeded = [t for t in study.trials if t.user_attrs.get("seeded_from") == "grid"]
    assert len(seeded) == 6 and [t.number for t in seeded] == list(range(6))  # fed in first
    assert len(study.trials) == 10
    for t in seeded:  # scored from the sweep's stored rows
        runs = t.user_attrs["runs"]
        rows = stored_rows(sweep_store, runs["pv"] + runs["native"])
        assert t.values[0] == pytest.approx(rows[runs["native"][0]]["sys_s"] / rows[runs["pv"][0]]["sys_s"])
    again = run_search(sweep_store, dataclasses.replace(spec, trials=5), InProcessExecutor(), seed_from="grid", heartbeat_s=1)
    assert (again.seed.queued, again.seed.already) == (0, 6) and again.report.trials == 1  # resumed by name
    outside = parse_search_spec(spec.text.replace("name: seeded", "name: wider").replace("pages: [16, 256]", "pages: [16, 64]"))
    partial = run_search(sweep_store, dataclasses.replace(outside, trials=1), InProcessExecutor(), seed_from="grid", heartbeat_s=1)
    assert (partial.seed.queued, partial.seed.outside) == (3, 3)


def test_constraints_keep_infeasible_trials_marked_and_out_of_the_best(sweep_store: Any) -> None:
    spec = parse_search_spec(
        f"name: cons\nbase: {CPU}\nspace:\n  vcpus: [8, 72]\n  overcommit: [1, 4]\n"
        "objectives: [benefit_real]\nconstraints: [outcome == ok, overcommit <= 2]\nsampler: grid\ntrials: 4\n"
    )
    session = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    study = session.search.study
    trials = {(t.params["vcpus"], t.params["overcommit"]): t for t in study.trials}
    assert set(trials) == {(8, 1), (8, 4), (72, 1), (72, 4)}
    assert all(t.state.name == "COMPLETE" for t in trials.values())  # kept, not failed
    # 72 vCPUs as SMT pairs with enlightenments and no PV flush: the native baseline crashes at boot
    assert trials[(72, 1)].user_attrs["outcome"] == "crash" and trials[(72, 1)].constraints["outcome == ok"] == 1.0
    assert trials[(8, 4)].constraints == {"outcome == ok": 0.0, "overcommit <= 2": 2.0}  # misses by 4 - 2
    assert [k for k, t in trials.items() if all(v <= 0 for v in t.constraints.values())] == [(8, 1)]
    assert [t.params for t in best_trials(study, spec)] == [{"vcpus": 8, "overcommit": 1}]
    assert session.report.told == {"complete": 1, "infeasible": 3}


def test_a_ratio_over_a_crashed_run_fails_the_trial_with_the_reason(sweep_store: Any) -> None:
    spec = parse_search_spec(
        f"name: inf\nbase: {CPU}\nspace:\n  vcpus: [8, 72]\nobjectives: [benefit_ops]\nsampler: grid\ntrials: 2\n"
    )
    study = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1).search.study
    by_vcpus = {t.params["vcpus"]: t for t in study.trials}
    assert by_vcpus[8].state.name == "COMPLETE"
    assert by_vcpus[72].state.name == "FAIL"
    assert by_vcpus[72].user_attrs["error"].startswith("objective benefit_ops is inf (the native run: outcome crash")


def test_several_objectives_give_the_pareto_front(sweep_store: Any) -> None:
    spec = parse_search_spec(
        f"name: front\nbase: {STORM}\nspace:\n  overcommit: [1, 2, 4, 8]\n  pages: [16, 1024]\n"
        "objectives:\n  - benefit_sys\n  - {name: consolidation, expr: vcpus / pcpus}\n  - {name: p99, expr: pv.lat_p99_us, direction: minimize}\n"
        "sampler: grid\ntrials: 8\n"
    )
    study = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1).search.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["benefit_sys", "consolidation", "p99"]
    front = best_trials(study, spec)
    assert {t.number for t in front} == {t.number for t in study.best_trials}  # Optuna's own front agrees
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    for t in front:
        better = [o for o in complete if o.values[0] >= t.values[0] and o.values[1] >= t.values[1] and o.values[2] <= t.values[2]
                  and o.values != t.values]
        assert not better, f"trial {t.number} is dominated by {[o.number for o in better]}"
    assert len(pareto_front(complete, spec.directions)) == len(front) < len(complete)
    assert "Pareto front (maximize benefit_sys, maximize consolidation, minimize p99" in summary_text(study, spec)


def test_study_opens_with_optuna_load_study(tmp_path: Path, db_url: str) -> None:
    import optuna

    from storage import open_store

    spec = parse_search_spec(f"name: loadable\nbase: {CPU8}\nspace:\n  pcpus: [2, 4, 8]\nobjectives: [benefit_ops]\ntrials: 3\nsampler: grid\n")
    with open_store(tmp_path / "store", db_url) as store:
        run_search(store, spec, InProcessExecutor(), heartbeat_s=1).search.close()
        url = store.db_url
        done = {r.run_id for r in store.runs("loadable", status="done")}
    study = optuna.load_study(study_name="loadable", storage=url)
    assert len(study.trials) == 3 and {t.state.name for t in study.trials} == {"COMPLETE"}
    assert sorted(t.params["pcpus"] for t in study.trials) == [2, 4, 8]
    assert {r for t in study.trials for r in t.user_attrs["runs"]["pv"] + t.user_attrs["runs"]["native"]} == done
    with open_store(tmp_path / "store", db_url, readonly=True) as store:  # the store still opens beside Optuna's tables
        assert store.find_sweep("loadable").kind == "search"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trials_of_a_dead_driver_are_requeued_and_evaluated(sweep_store: Any) -> None:
    spec = parse_search_spec(f"name: stale\nbase: {CPU8}\nspace:\n  pcpus: [1, 2, 4, 8]\nobjectives: [benefit_ops]\ntrials: 4\nsampler: grid\n")
    from sweep.search._service import begin_search

    from sweep._expand import default_run_key
    from sweep.search import plan_trial

    begin_search(sweep_store, spec)
    dead = OptunaSearch(spec, url=sweep_store.db_url, heartbeat_s=1)
    asked = dead.ask()
    beating = dead.started(asked, plan_trial(spec, asked.params, default_run_key()))  # marked alive, then the driver died
    # a trial that never had a heartbeat (as Optuna's own ask leaves one): Optuna's stale check cannot see it
    silent = dead.study.ask(fixed_distributions=spec.space.distributions())
    dead.close()
    time.sleep(4.5)  # past the grace period (3 x heartbeat; SQLite's clock has whole seconds)
    session = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    study = session.search.study
    states = trials_by_state(study)
    assert "RUNNING" not in states and "WAITING" not in states  # the search waited for the silent one too
    assert session.recovered_at_start == 1 and session.report.recovered == 1  # it was given a heartbeat, then went stale
    failed = {t.number: t for t in states["FAIL"]}
    assert set(failed) == {beating.number, silent.number}
    retries = [t for t in states["COMPLETE"] if t.system_attrs.get("failed_trial") in failed]
    assert sorted(t.params["pcpus"] for t in retries) == sorted([beating.params["pcpus"], silent.params["pcpus"]])
    # the budget counts evaluated trials: every grid point is; the silent trial's late retry may repeat one
    assert {t.params["pcpus"] for t in states["COMPLETE"]} == {1, 2, 4, 8}


def test_runs_that_keep_failing_fail_their_trial(sweep_store: Any, profile_dir: Path) -> None:
    from sweep._expand import default_run_key

    spec = parse_search_spec(
        f"name: flaky\nbase: {CPU8}\nspace:\n  profile: [literature, flaky]\nobjectives: [benefit_ops]\ntrials: 2\nsampler: grid\n"
    )
    key = default_run_key()
    from sweep.search import plan_trial

    plan_trial(spec, {"profile": "flaky"}, key)  # the driver has planned with it...
    (profile_dir / "flaky.yaml").unlink()  # ...and then the workers can no longer load it
    from sweep.search._driver import SearchOptions

    session = run_search(sweep_store, spec, InProcessExecutor(), run_key=key, options=SearchOptions(max_attempts=2), heartbeat_s=1)
    by_profile = {t.params["profile"]: t for t in session.search.study.trials}
    assert by_profile["literature"].state.name == "COMPLETE"
    assert by_profile["flaky"].state.name == "FAIL"
    assert "failed 2 times" in by_profile["flaky"].user_attrs["error"]
    assert "no calibration profile 'flaky'" in by_profile["flaky"].user_attrs["error"]
    assert session.report.runs_failed == 2 and len(sweep_store.runs("flaky", status="failed")) == 2
    fast = parse_search_spec(spec.text.replace("name: flaky", "name: fast"))
    stopped = run_search(sweep_store, fast, InProcessExecutor(), run_key=key, heartbeat_s=1,
                         options=SearchOptions(max_attempts=1, fail_fast=True))
    assert stopped.report.status == "failed" and sweep_store.find_sweep("fast").status == "failed"
    flaky = next(t for t in stopped.search.study.trials if t.params["profile"] == "flaky")
    assert flaky.state.name == "FAIL" and "failed 1 times" in flaky.user_attrs["error"]  # told, not re-queued
    assert "WAITING" not in trials_by_state(stopped.search.study)


def test_a_search_cannot_take_a_sweeps_name_nor_change_its_objectives(sweep_store: Any) -> None:
    from sweep import SpecError

    sweep = parse_spec(f"name: taken\nbase: {CPU8}\naxes:\n  vcpus: [8]\n")
    start_sweep(sweep_store, sweep, expand(sweep))
    spec = parse_search_spec(f"name: taken\nbase: {CPU8}\nspace:\n  pcpus: [2, 4]\nobjectives: [benefit_ops]\ntrials: 1\n")
    with pytest.raises(NameTaken, match="'taken' is already the name of a sweep"):
        run_search(sweep_store, spec, InProcessExecutor())
    import optuna

    assert "taken" not in optuna.get_all_study_names(sweep_store.db_url)  # refused before any study was created
    mine = dataclasses.replace(spec, name="mine")
    run_search(sweep_store, mine, InProcessExecutor(), heartbeat_s=1).search.close()
    other = parse_search_spec(mine.text.replace("name: taken", "name: mine").replace("objectives: [benefit_ops]", "objectives: [benefit_ops]\ndirection: minimize"))
    with pytest.raises(SpecError, match="was created with directions \\['maximize'\\], the spec asks for \\['minimize'\\]"):
        run_search(sweep_store, other, InProcessExecutor())


def test_a_finished_search_is_compacted_and_an_interrupted_one_left_as_committed(sweep_store: Any) -> None:
    """A search commits each trial's new runs before telling it (a file each); once done, they are merged."""
    from search_fixtures import interrupt_after

    spec = parse_search_spec(f"name: packed\nbase: {CPU8}\nspace:\n  pcpus: [1, 2, 4, 8]\nobjectives: [benefit_ops]\ntrials: 4\nsampler: grid\n")

    def files() -> set[str | None]:
        return {r.result_file for r in sweep_store.runs("packed", status="done")}

    interrupt_after(sweep_store, spec, trials=2)
    assert len(files()) >= 2  # interrupted: left as committed
    session = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    assert session.report.status == "done" and session.report.runs_simulated > 0
    assert len(sweep_store.runs("packed", status="done")) == 8 and len(files()) == 1
    assert sweep_store.check() == []


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "nsga2", "grid", "gp"])
def test_each_sampler_drives_a_search_or_names_what_it_lacks(sweep_store: Any, sampler: str) -> None:
    import importlib.util

    from sweep import SpecError

    text = (f"name: s-{sampler}\nbase: {CPU8}\nspace:\n  pcpus: {{low: 1, high: 8}}\n  sleep_max_us: {{low: 0, high: 100, step: 50}}\n"
            f"objectives: [benefit_ops]\ntrials: 5\nparallel: 2\nsampler: {sampler}\nseed: 7\n")
    missing = [m for m in {"gp": ("torch", "scipy"), "cmaes": ("cmaes",)}.get(sampler, ()) if importlib.util.find_spec(m) is None]
    if missing:
        with pytest.raises(SpecError, match=f"sampler: {sampler} needs the {missing[0]} package \\(pip install {missing[0]}\\); or use tpe"):
            parse_search_spec(text)
        return
    spec = parse_search_spec(text)
    session = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    trials = session.search.study.trials
    assert len(trials) == 5 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(1 <= t.params["pcpus"] <= 8 and t.params["sleep_max_us"] in (0, 50, 100) for t in trials)
    if sampler == "grid":  # each grid point once
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 5
