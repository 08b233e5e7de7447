"""`flushsweep run/status/cancel/resume` as a user runs them (fresh interpreters, real stores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep import InProcessExecutor, execute_sweep, expand, parse_spec, start_sweep
from sweep_fixtures import REPO, flushsweep, profile_dir, stored_run_ids, write_spec  # noqa: F401 - fixtures

CHEAP = "{workload: cpu-bound, vcpus: 4, pcpus: 2, threads: 2, duration_s: 0.01}"


def test_invalid_spec_names_the_line_and_stores_nothing(tmp_path: Path) -> None:
    from storage import open_store

    store_dir = tmp_path / "store"
    with open_store(store_dir) as s:  # an existing store must stay untouched too
        assert s.sweeps() == []
    bad = write_spec(tmp_path / "bad.yaml", f"name: bad\nbase: {CHEAP}\naxes:\n  vcpus: [2, 4]\n  vcpuz: [8]\n")
    result = flushsweep("run", str(bad), "--store", str(store_dir))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"flushsweep run: error: {bad}:5: axes.vcpuz: unknown RunConfig field; did you mean 'vcpus'?"
    ]
    with open_store(store_dir, readonly=True) as s:
        assert s.sweeps() == [] and s.runs() == []
    fresh = tmp_path / "never-created"
    assert flushsweep("run", str(bad), "--store", str(fresh)).returncode == 2
    assert not fresh.exists()


def test_dry_run_prints_count_drops_and_a_sample_without_storing(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "plan.yaml",
        f"name: plan\nbase: {CHEAP}\naxes:\n  vcpus: [4, 6]\n  topology: [smt2, 2x2x1]\n  flush_mode: [native, hyperv-pv]\n"
        "replicates: 2\ncompare: flush_mode\n",
    )
    result = flushsweep("run", str(spec), "--dry-run", "--sample", "3", "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "plan: 12 runs from 16 combinations; 4 impossible dropped [topology (4)]" in out
    assert "first 3 runs:" in out and "baseline" in out and "flush_mode" in out
    assert len([ln for ln in out.splitlines() if ln[:12].strip() and all(c in "0123456789abcdef" for c in ln[:12])]) == 3
    assert not (tmp_path / "store").exists()


def test_status_lists_sweeps_and_failed_runs(tmp_path: Path, profile_dir: Path) -> None:
    from storage import open_store

    store_dir = tmp_path / "store"
    spec = parse_spec(f"name: st\nbase: {CHEAP}\naxes:\n  profile: [literature, flaky]\n")
    with open_store(store_dir) as s:
        start_sweep(s, spec, expand(spec))
        (profile_dir / "flaky.yaml").unlink()
        execute_sweep(s, "st", InProcessExecutor())
    listing = flushsweep("status", "--store", str(store_dir), env={"FLUSHSWEEP_PROFILES": str(profile_dir)})
    assert listing.returncode == 0, listing.stderr
    row = next(ln for ln in listing.stdout.splitlines() if ln.startswith("st "))
    assert row.split()[:7] == ["st", "sweep", "failed", "1", "1", "0", "0"]
    one = flushsweep("status", "st", "--store", str(store_dir))
    assert "1 failed runs" in one.stdout and "no calibration profile 'flaky'" in one.stdout
    missing = flushsweep("status", "nope", "--store", str(store_dir))
    assert missing.returncode == 2 and "no sweep named 'nope'" in missing.stderr


def test_cancel_then_resume_with_nothing_left_needs_no_cluster(tmp_path: Path) -> None:
    from storage import open_store

    store_dir = tmp_path / "store"
    spec = parse_spec(f"name: cr\nbase: {CHEAP}\naxes:\n  seed: [0, 1, 2]\n")
    with open_store(store_dir) as s:
        start_sweep(s, spec, expand(spec))
    cancelled = flushsweep("cancel", "cr", "--store", str(store_dir))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    with open_store(store_dir) as s:
        assert s.find_sweep("cr").status == "cancelled"
        execute_sweep(s, "cr", InProcessExecutor())  # someone finished it in-process
    resumed = flushsweep("resume", "cr", "--store", str(store_dir), "--address", "127.0.0.1:1")  # unreachable: never joined
    assert resumed.returncode == 0, resumed.stderr
    assert "sweep cr: done; 0 done, 3 skipped" in resumed.stdout
    unknown = flushsweep("resume", "nope", "--store", str(store_dir))
    assert unknown.returncode == 2 and "no sweep named 'nope'" in unknown.stderr


def test_unreachable_cluster_is_a_one_line_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "x.yaml", f"name: x\nbase: {CHEAP}\n")
    result = flushsweep("run", str(spec), "--store", str(tmp_path / "store"), "--address", "127.0.0.1:1", timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("flushsweep run: error: --address: could not join the Ray cluster at 127.0.0.1:1")


@pytest.mark.ray
def test_quickstart_runs_and_prints_pv_benefit_then_costs_nothing_again(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    first = flushsweep("run", "configs/sweeps/quickstart.yaml", "--store", str(store_dir), "--workers", "2", timeout=240)
    assert first.returncode == 0, first.stderr
    exp = expand(parse_spec((REPO / "configs/sweeps/quickstart.yaml").read_text()))
    assert f"sweep quickstart: done; {len(exp.runs)} done, 0 skipped, 0 failed" in first.stdout
    table = first.stdout.split("PV benefit", 1)[1].splitlines()
    header = next(ln for ln in table if ln.startswith("guest_os"))
    assert header.split()[:7] == ["guest_os", "workload", "threads", "vms", "hv_semantics", "flush_mode", "pairs"]
    assert "real x" in header and "ops/s x" in header
    # a row per guest, VM count, handler and PV mode: Linux has two PV modes, Windows one (kvm-pv is Linux's)
    rows = [ln.split() for ln in table if ln.split()[:1] in (["linux"], ["windows-2016"])]
    assert len(rows) == 2 * 3 * 2 + 3 * 2
    assert {r[5] for r in rows if r[0] == "windows-2016"} == {"hyperv-pv"}
    assert {r[5] for r in rows if r[0] == "linux"} == {"hyperv-pv", "kvm-pv"}
    ids = stored_run_ids(store_dir, sweep="quickstart")
    assert len(ids) == len(set(ids)) == len(exp.runs)

    again = flushsweep("run", "configs/sweeps/quickstart.yaml", "--store", str(store_dir), timeout=120)
    assert again.returncode == 0
    assert f"0 done, {len(exp.runs)} skipped" in again.stdout and "running on" not in again.stderr


def test_resume_refuses_a_calibration_and_names_the_command_that_resumes_it(tmp_path: Path) -> None:
    from storage import open_store

    store_dir = tmp_path / "store"
    with open_store(store_dir) as s:
        s.begin_sweep("fit.seed", "calibration spec", kind="calibration")
    result = flushsweep("resume", "fit.seed", "--store", str(store_dir))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "flushsweep resume: error: SWEEP: 'fit.seed' is a calibration; resume it by running "
        "`flushsweep calibrate` again with the same arguments"
    ]
