"""The study a search writes: what Optuna reads back, what the sampler sees, and what a killed driver leaves."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from sweep import InProcessExecutor, execute_sweep, expand, parse_spec, start_sweep
from sweep.search import OptunaSearch, parse_search_spec, run_search
from sweep_fixtures import sweep_store  # noqa: F401 - fixture

#: ~5 ms paired trials; 72 vCPUs crash the native baseline at boot, so constraints and failures show up too.
CPU = "{workload: cpu-bound, duration_s: 0.002, guest_os: windows-2016, threads: 8, topology: smt2}"
SPEC = f"""\
name: written
base: {CPU}
space:
  vcpus: [8, 16, 72]
  overcommit: [1, 2, 4]
objectives: [benefit_real]
constraints: [outcome == ok]
trials: 6
sampler: random
seed: 3
"""


def frozen(trial: Any) -> dict[str, Any]:
    """What a user reads of a trial, without ids and clocks."""
    return {
        "number": trial.number, "state": trial.state.name, "params": trial.params, "distributions": trial.distributions,
        "values": trial.values, "user_attrs": trial.user_attrs, "constraints": trial.constraints,
        "system_attrs": {k: v for k, v in trial.system_attrs.items()},
    }


@pytest.fixture
def away_from_utc(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Local time 5:30 ahead of UTC, so a datetime stored in the wrong zone shows."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_study_holds_what_optunas_own_ask_and_tell_would_write(tmp_path: Path, db_url: str, away_from_utc: Any) -> None:
    """Every trial, replayed through Optuna's own ask/tell on the same database, reads back attribute for attribute the same."""
    import optuna

    from storage import open_store
    from sweep.search import make_sampler

    spec = parse_search_spec(SPEC)
    with open_store(tmp_path / "store", db_url) as store:
        search = OptunaSearch(spec, url=store.db_url, heartbeat_s=1)
        before = dt.datetime.now()
        run_search(store, spec, InProcessExecutor(), search=search, heartbeat_s=1)
        search.close()
        after = dt.datetime.now()
        url = store.db_url
    study = optuna.load_study(study_name="written", storage=url)
    assert len(study.trials) == 6
    for t in study.trials:  # FrozenTrial datetimes are local time, as Optuna's own are
        assert before - dt.timedelta(seconds=1) <= t.datetime_start <= t.datetime_complete <= after + dt.timedelta(seconds=1)
    replay = optuna.create_study(study_name="replayed", storage=url, sampler=make_sampler(spec), directions=spec.directions)
    for t in study.trials:
        asked = replay.ask(spec.space.distributions())
        for key, value in t.user_attrs.items():
            asked.set_user_attr(key, value)
        for name, value in t.constraints.items():
            asked.set_constraint(name, value)
        replay.tell(asked, t.values, state=t.state)
    ours, theirs = ([frozen(t) for t in s.trials] for s in (study, optuna.load_study(study_name="replayed", storage=url)))
    assert ours == theirs  # same sampler seed: same parameters, and the same values, attributes and constraints
    trials = ours
    assert {t["state"] for t in trials} == {"COMPLETE"} and [t["number"] for t in trials] == list(range(6))
    crashed = [t for t in trials if t["params"]["vcpus"] == 72]
    assert crashed and all(t["user_attrs"]["outcome"] == "crash" and t["constraints"] == {"outcome == ok": 1.0} for t in crashed)
    assert all(set(t["user_attrs"]["runs"]) == {"pv", "native"} for t in trials)


def test_the_sampler_proposes_what_optunas_own_ask_and_tell_would(sweep_store: Any) -> None:
    """Sampling on the in-memory copy changes nothing: an Optuna study told the same values asks the same trials."""
    import optuna

    from sweep.search import make_sampler

    spec = parse_search_spec(
        "name: replayed\nbase: {guest_os: windows-2016, workload: mmap-munmap, vcpus: 8, iterations: 2}\n"
        "space:\n  overcommit: [1, 2, 4]\n  pages: {low: 16, high: 1024, log: true}\n  threads: {low: 2, high: 16}\n"
        "objectives: [benefit_real]\nconstraints: [outcome == ok]\ntrials: 12\nsampler: {name: tpe, n_startup_trials: 4}\nseed: 5\n"
    )
    study = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1).search.study
    replay = optuna.create_study(sampler=make_sampler(spec), directions=spec.directions)
    for t in study.trials:
        asked = replay.ask(spec.space.distributions())
        assert asked.params == t.params, f"trial {t.number}"
        for name, value in t.constraints.items():
            asked.set_constraint(name, value)
        replay.tell(asked, t.values, state=t.state)


def test_sqlite_study_is_in_wal_mode_and_a_stopped_search_leaves_nothing_running(sweep_store: Any) -> None:
    import optuna

    from search_fixtures import interrupt_after

    spec = parse_search_spec(SPEC.replace("name: written", "name: stopped").replace("trials: 6", "trials: 4"))
    interrupt_after(sweep_store, spec, trials=2)
    path = sweep_store.db_url.removeprefix("sqlite:///")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    states = [t.state.name for t in optuna.load_study(study_name="stopped", storage=sweep_store.db_url).trials]
    assert "RUNNING" not in states and states.count("COMPLETE") >= 2  # every told result is written
    resumed = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    states = [t.state.name for t in resumed.search.study.trials]
    assert "RUNNING" not in states and "WAITING" not in states and states.count("COMPLETE") == 4


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_whose_driver_died_after_storing_its_runs_is_told_from_the_store(sweep_store: Any) -> None:
    """The store is the source of truth: the retry of a dead driver's trial reads its stored runs, simulating none."""
    from storage import NewRun
    from sweep import RunTask, execute_batch
    from sweep._expand import default_run_key
    from sweep._task import pack_outcomes
    from sweep.search import plan_trial
    from sweep.search._service import begin_search

    spec = parse_search_spec(SPEC.replace("name: written", "name: died").replace("trials: 6", "trials: 3"))
    key = default_run_key()
    begin_search(sweep_store, spec)
    dead = OptunaSearch(spec, url=sweep_store.db_url, heartbeat_s=1)
    asked = dead.ask()
    plan = plan_trial(spec, asked.params, key)
    started = dead.started(asked, plan)
    # what its controller did before the kill: register, simulate and commit the trial's runs (not tell it)
    sweep_store.add_runs(spec.name, [NewRun(r.run_id, r.config.to_dict(), r.baseline_run_id) for r in plan.runs])
    sweep_store.mark_running(plan.run_ids)
    tasks = [RunTask(r.run_id, r.config.to_dict(), r.baseline_run_id) for r in plan.runs]
    sweep_store.commit_results(spec.name, pack_outcomes(execute_batch(tasks, "dead-node")).table)
    dead.storage.engine.dispose()
    time.sleep(4.5)  # past the grace period (3 x heartbeat)
    computed: list[str] = []

    def recording(tasks: Any, node: str) -> Any:
        computed.extend(t.run_id for t in tasks)
        return execute_batch(tasks, node)

    session = run_search(sweep_store, spec, InProcessExecutor(batch=recording), heartbeat_s=1, run_key=key)
    by_number = {t.number: t for t in session.search.study.trials}
    assert session.recovered_at_start == 1 and by_number[started.number].state.name == "FAIL"
    retry = next(t for t in by_number.values() if t.system_attrs.get("failed_trial") == started.number)
    assert retry.state.name == "COMPLETE" and retry.params == asked.params
    assert set(retry.user_attrs["runs"]["pv"] + retry.user_attrs["runs"]["native"]) == set(plan.run_ids)
    assert not set(plan.run_ids) & set(computed)  # read from the store, not simulated again
    stored = sweep_store.results(sweep=spec.name).column("run_id").to_pylist()
    assert len(stored) == len(set(stored))


def test_runs_a_killed_driver_reused_are_linked_to_the_search_by_the_next_session(sweep_store: Any) -> None:
    from sweep.search import SearchController, SearchOptions
    from sweep.search._cache import RunCache
    from sweep._expand import default_run_key
    from sweep.search._service import begin_search, relink

    base = CPU.replace("}", ", vcpus: 8}")
    sweep = parse_spec(f"name: grid\nbase: {base}\naxes:\n  pcpus: [2, 4, 8]\n  flush_mode: [native, hyperv-pv]\ncompare: flush_mode\n")
    start_sweep(sweep_store, sweep, expand(sweep))
    assert execute_sweep(sweep_store, "grid", InProcessExecutor()).status == "done"
    spec = parse_search_spec(f"name: reuser\nbase: {base}\nspace:\n  pcpus: [2, 4, 8]\nobjectives: [benefit_ops]\ntrials: 3\nsampler: grid\n")
    key = default_run_key()
    begin_search(sweep_store, spec)
    search = OptunaSearch(spec, url=sweep_store.db_url, heartbeat_s=1)
    cache = RunCache()
    cache.prefetch(sweep_store, spec, _first_config(spec, key))
    controller = SearchController(store=sweep_store, spec=spec, search=search, executor=InProcessExecutor(), cache=cache,
                                  run_key=key, options=SearchOptions(commit_interval_s=3600))
    while controller.report().trials < 2:
        controller.step()
    search.flush()  # the results reached the study, the links to the reused runs did not: then the driver dies
    search.storage.engine.dispose()
    assert sweep_store.runs("reuser") == []
    finished = [t for t in search.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    used = {r for t in finished for r in t.user_attrs["runs"]["pv"] + t.user_attrs["runs"]["native"]}
    assert relink(sweep_store, spec, OptunaSearch(spec, url=sweep_store.db_url), key) == len(used) == 2 * len(finished)
    assert {r.run_id for r in sweep_store.runs("reuser")} == used
    session = run_search(sweep_store, spec, InProcessExecutor(), heartbeat_s=1)
    assert session.report.runs_simulated == 0
    all_used = {r for t in session.search.study.trials for r in t.user_attrs["runs"]["pv"] + t.user_attrs["runs"]["native"]}
    assert sweep_store.progress("reuser")["done"] == len(all_used) == 6


def _first_config(spec: Any, key: Any) -> Any:
    from sweep.search import plan_trial

    return plan_trial(spec, {p.name: p.grid()[0] for p in spec.space.params}, key).config


def test_two_drivers_never_both_take_a_queued_trial(sweep_store: Any) -> None:
    from sweep.search import Evaluation
    from sweep.search._service import begin_search

    spec = parse_search_spec(SPEC.replace("name: written", "name: shared"))
    begin_search(sweep_store, spec)
    first, second = (OptunaSearch(spec, url=sweep_store.db_url, heartbeat_s=1) for _ in range(2))
    assert first.enqueue([{"vcpus": 16, "overcommit": 2}], seeded_from="grid") == 1
    second.recover()  # its copy of the study now holds the queued trial too
    from sweep._expand import default_run_key
    from sweep.search import plan_trial

    taken = first.ask()  # claims the queued trial
    other = second.ask()  # finds the queued trial claimed: samples a new one instead
    assert (taken.params, taken.seeded_from) == ({"vcpus": 16, "overcommit": 2}, "grid")
    assert other.seeded_from is None and other.number is None  # not in the study until it starts
    taken = first.started(taken, plan_trial(spec, taken.params, default_run_key()))
    other = second.started(other, plan_trial(spec, other.params, default_run_key()))
    assert other.number != taken.number
    for search, proposal in ((first, taken), (second, other)):
        search.tell(proposal, Evaluation("complete", (1.0,)))
        search.close()
    states = {t.number: t.state.name for t in first.study.get_trials(deepcopy=False)}
    assert states == {taken.number: "COMPLETE", other.number: "COMPLETE"}
