"""Searches on real Ray: parallel trials in flight, and a SIGKILLed driver whose study resumes with nothing stuck."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from sweep_fixtures import flushsweep, start_flushsweep, stored_run_ids, wait_until, write_spec

pytestmark = pytest.mark.ray

#: ~0.1 s per run, 2 runs per trial: trials last long enough to be caught in flight.
SPEC = """\
name: ray-search
base: {guest_os: windows-2016, workload: mmap-munmap, vcpus: 16, iterations: 16, pages: 1024}
space:
  overcommit: [1, 2, 4]
  threads: {low: 4, high: 32, step: 4}
  sleep_max_us: {low: 0, high: 200, step: 50}
objectives: [benefit_sys]
constraints: [outcome == ok]
trials: 16
parallel: 2
seed: 1
"""


def stop_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def load(store_dir: Path):
    import optuna

    return optuna.load_study(study_name="ray-search", storage=f"sqlite:///{store_dir / 'meta.sqlite'}")


def test_sigkilled_driver_then_search_again_resumes_with_no_trial_left_running(tmp_path: Path) -> None:
    from storage import open_store

    spec = write_spec(tmp_path / "s.yaml", SPEC)
    store = tmp_path / "store"
    args = ("search", str(spec), "--store", str(store), "--workers", "2", "--heartbeat", "1", "--progress", "none")
    driver = start_flushsweep(*args)
    try:
        def some_done() -> bool:
            if driver.poll() is not None:
                raise AssertionError(f"the search ended early: {driver.communicate()}")
            try:
                with open_store(store, readonly=True) as s:
                    return s.progress("ray-search")["done"] >= 8
            except Exception:  # the store or the search does not exist yet
                return False

        wait_until(some_done, timeout=180, interval=0.3, what="8 runs stored")
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: its embedded Ray notices and exits
        driver.wait(timeout=30)
    finally:
        time.sleep(3)
        stop_group(driver)

    killed = load(store)
    in_flight = {t.number: t.params for t in killed.trials if t.state.name == "RUNNING"}
    assert in_flight, "the driver was killed with no trial in flight"
    told_before = sum(1 for t in killed.trials if t.state.name == "COMPLETE")

    resumed = flushsweep(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "search ray-search: done" in resumed.stdout and "trials of a dead driver re-queued" in resumed.stdout
    study = load(store)
    by_state: dict[str, list] = {}
    for t in study.trials:
        by_state.setdefault(t.state.name, []).append(t)
    assert "RUNNING" not in by_state and "WAITING" not in by_state
    assert len(by_state["COMPLETE"]) == 16 and told_before < 16
    assert {t.number for t in by_state["FAIL"]} == set(in_flight)  # failed as stale ...
    retried = {t.system_attrs["failed_trial"]: t.params for t in by_state["COMPLETE"] if "failed_trial" in t.system_attrs}
    assert retried == in_flight  # ... and evaluated again with the same parameters
    ids = stored_run_ids(store, sweep="ray-search")
    assert len(ids) == len(set(ids))  # every run stored once, whichever driver computed it
    wanted = {r for t in by_state["COMPLETE"] for r in t.user_attrs["runs"]["pv"] + t.user_attrs["runs"]["native"]}
    assert wanted <= set(ids)
    with open_store(store, readonly=True) as s:
        assert s.progress("ray-search")["running"] == 0 and s.find_sweep("ray-search").status == "done"
    # no batch barrier: with 2 in flight, trials overlap in time (each started while another ran)
    complete = sorted(by_state["COMPLETE"], key=lambda t: t.datetime_start)
    overlaps = sum(1 for a, b in zip(complete, complete[1:]) if b.datetime_start < a.datetime_complete)
    assert overlaps >= 4
