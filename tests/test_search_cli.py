"""`flushsweep search` as a user runs it: fresh interpreters, real stores, simulation in the driver (--local)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sweep_fixtures import flushsweep, start_flushsweep, wait_until, write_spec

#: ~10-40 ms per run: long enough to interrupt mid-search, short enough for a fast test. A Linux
#: guest: its lazy-TLB idle vCPUs and preempted targets give PV a benefit that varies over the space.
SPEC = """\
name: cli-search
base: {guest_os: linux, workload: mmap-munmap, vcpus: 8, iterations: 4}
space:
  overcommit: [1, 2, 4]
  pages: [16, 256, 1024]
  threads: {low: 4, high: 16, step: 4}
objectives: [benefit_real]
constraints: [outcome == ok]
trials: 10
seed: 3
"""


def study(store_dir: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{store_dir / 'meta.sqlite'}")


def states(store_dir: Path, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study(store_dir, name).trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_invalid_space_is_refused_with_the_field_named_and_nothing_stored(tmp_path: Path) -> None:
    bad = write_spec(tmp_path / "bad.yaml", SPEC.replace("threads: {low: 4, high: 16, step: 4}", "threads: {low: 4, high: 16, step: 5}"))
    result = flushsweep("search", str(bad), "--local", "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"flushsweep search: error: {bad}:6: space.threads.high: 16 is not low + a multiple of step 5; use 14"
    ]
    assert not (tmp_path / "store").exists()
    good = write_spec(tmp_path / "good.yaml", SPEC)
    from storage import open_store

    with open_store(tmp_path / "store"):
        pass  # an empty store
    result = flushsweep("search", str(good), "--local", "--store", str(tmp_path / "store"), "--seed-from-sweep", "nope")
    assert result.returncode == 2
    assert result.stderr.strip() == "flushsweep search: error: --seed-from-sweep: no sweep named 'nope'; known sweeps: none yet"
    with open_store(tmp_path / "store", readonly=True) as s:
        assert s.sweeps() == []  # refused before the search was created
    import shutil

    shutil.rmtree(tmp_path / "store")
    option = write_spec(tmp_path / "opt.yaml", SPEC + "sampler: {name: tpe, n_startup_trials: many}\n")
    result = flushsweep("search", str(option), "--local", "--store", str(tmp_path / "store"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"flushsweep search: error: {option}:11: sampler.n_startup_trials: expected a whole number (like the default 10), got 'many'"
    assert not (tmp_path / "store").exists()


def test_search_prints_the_best_configurations_and_writes_figures(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", SPEC.replace("trials: 10", "trials: 12"))
    store, plots = tmp_path / "store", tmp_path / "figures"
    result = flushsweep("search", str(spec), "--local", "--store", str(store), "--plots", str(plots), "--progress", "none", "--top", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "search cli-search: done; 12 trials this session (12 complete)" in out
    assert "optuna-dashboard" in out and f"sqlite:///{store}/meta.sqlite" in out
    table = out[out.index("best configurations"):].splitlines()
    assert table[1].split() == ["trial", "benefit_real", "overcommit", "pages", "threads", "outcome"]
    values = [float(line.split()[1]) for line in table[3:6]]
    assert values == sorted(values, reverse=True)
    assert "parameter importances (benefit_real, fANOVA): " in out
    for name in ("history", "importances", "slice", "contour"):
        assert (plots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    again = flushsweep("search", "cli-search", "--local", "--store", str(store), "--trials", "14", "--progress", "none")
    assert again.returncode == 0, again.stderr  # resumed by name from the stored spec: 2 more trials
    assert "search cli-search: done; 2 trials this session" in again.stdout
    assert states(store, "cli-search") == {"COMPLETE": 14}


def test_interrupted_search_requeues_its_trials_and_the_same_command_finishes_it(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", SPEC.replace("trials: 10", "trials: 30\nparallel: 2").replace("iterations: 4", "iterations: 12"))
    store = tmp_path / "store"
    args = ("search", str(spec), "--local", "--store", str(store), "--progress", "none", "--heartbeat", "1")
    driver = start_flushsweep(*args)

    def some_told() -> bool:
        if driver.poll() is not None:
            raise AssertionError(f"the search ended early: {driver.communicate()}")
        from storage import open_store

        try:  # read the store first: the study is opened only once the driver has created it
            with open_store(store, readonly=True) as s:
                if s.progress("cli-search")["done"] < 6:
                    return False
        except Exception:  # the store or the search does not exist yet
            return False
        return states(store, "cli-search").get("COMPLETE", 0) >= 3

    wait_until(some_told, timeout=120, interval=0.2, what="3 complete trials")
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert f"resume with: flushsweep search {spec}" in err
    interrupted = study(store, "cli-search")
    stopped = [t for t in interrupted.trials if t.user_attrs.get("stopped") == "interrupted"]  # in flight at Ctrl-C
    assert stopped and all(t.state.name == "FAIL" for t in stopped)
    waiting = [t for t in interrupted.trials if t.state.name == "WAITING"]
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in stopped)
    assert "RUNNING" not in states(store, "cli-search")
    from storage import open_store

    with open_store(store, readonly=True) as s:
        assert s.find_sweep("cli-search").status == "interrupted"
        assert s.progress("cli-search")["running"] == 0
    finished = flushsweep(*args)
    assert finished.returncode == 0, finished.stderr
    final = states(store, "cli-search")
    assert final.get("COMPLETE") == 30 and "WAITING" not in final and "RUNNING" not in final
    retried = [t for t in study(store, "cli-search").trials if t.state.name == "COMPLETE" and "failed_trial" in t.system_attrs]
    assert sorted(t.params.items() for t in retried) == sorted(t.params.items() for t in stopped)  # same configurations, evaluated
