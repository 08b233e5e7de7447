"""`flushsweep calibrate` as a user runs it: a fit on real Ray, the written profile and report, FIT FAILED, bad input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sweep.calibrate import Measurement, format_measurements, load_measurements
from sweep_fixtures import flushsweep, start_flushsweep
from workers import RunConfig, load_profile, simulate

FAST = dict(guest_os="windows-2016", hv_semantics="kvm-2018", pcpus=4, vcpus=8, threads=8, iterations=8, pages=512)
POINTS = (
    dict(flush_mode="native", enlightenments=False),
    dict(flush_mode="hyperv-pv"),
    dict(flush_mode="native", enlightenments=False, vcpus=4, topology="2x1x2"),
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Measurements the engine made under ``literature``, and a base profile with fault_ns 1.5x off."""
    d = tmp_path_factory.mktemp("calibrate-cli")
    truth = load_profile("literature")
    points = []
    for i, extra in enumerate(POINTS, start=1):
        cfg = RunConfig.from_dict({**FAST, **extra})
        r = simulate(cfg, truth)
        points.append(Measurement(i, 0, cfg, {"real_s": r.real_s, "user_s": r.user_s, "sys_s": r.sys_s}))
    csv = d / "host.csv"
    csv.write_text(format_measurements(points, comments=["simulated under literature"]))
    costs = {k: v for k, v in truth.to_dict().items() if k != "name"}
    costs["fault_ns"] = truth.fault_ns * 1.5
    base = d / "perturbed.yaml"
    base.write_text(yaml.safe_dump({"name": "perturbed", "description": "literature, fault_ns off", "costs": costs}))
    return {"dir": d, "csv": csv, "base": base, "store": d / "store"}


def calibrate(inputs: dict[str, Path], *extra: str, out: str = "fitted.yaml", fit: str = "fault_ns"):
    return flushsweep("calibrate", str(inputs["csv"]), "--base", str(inputs["base"]), "--fit", fit,
                      "--out", str(inputs["dir"] / out), "--store", str(inputs["store"]), *extra)


@pytest.mark.ray
def test_calibrate_fits_on_ray_and_writes_the_profile_and_its_report(inputs: dict[str, Path]) -> None:
    proc = calibrate(inputs, "--trials", "12", "--parallel-trials", "3", "--workers", "2", "--target-error", "0.01")
    assert proc.returncode == 0, proc.stderr
    out = inputs["dir"] / "fitted.yaml"
    profile = load_profile(str(out))
    truth = load_profile("literature")
    assert profile.name == "fitted"
    assert abs(profile.fault_ns - truth.fault_ns) < abs(truth.fault_ns * 1.5 - truth.fault_ns) / 2  # moved well toward the truth
    assert {k: v for k, v in profile.to_dict().items() if k not in ("name", "fault_ns")} == {
        k: v for k, v in truth.to_dict().items() if k not in ("name", "fault_ns")}
    fitted_to = yaml.safe_load(out.read_text())["fitted_to"]
    ms = load_measurements(inputs["csv"])
    assert (fitted_to["sha256"], fitted_to["rows"], fitted_to["constants"], fitted_to["base"]) == (ms.sha256, 3, ["fault_ns"], "perturbed")
    assert fitted_to["passed"] is True and fitted_to["error"] <= 0.10
    # the report: printed, and written next to the profile
    report = (inputs["dir"] / "fitted.fit.txt").read_text()
    assert report.strip() == proc.stdout.strip()
    assert "measured vs simulated" in report and "worst residuals" in report
    assert len([ln for ln in report.splitlines() if re.match(r"^\d+ ", ln)]) == ms.figure_count
    # the runs are ordinary runs of a calibration sweep, computed on Ray workers
    from storage import open_store

    with open_store(inputs["store"], readonly=True) as store:
        (sweep,) = store.sweeps()
        assert sweep.kind == "calibration" and sweep.name == fitted_to["study"]
        rows = store.to_pandas(sweep=sweep.name)
        assert len(rows) == len(set(rows["run_id"])) >= fitted_to["trials"]
        assert all(re.fullmatch(r"[0-9a-f]{56}", n) for n in rows["node"])  # Ray node ids, not this host's name
        assert set(rows["profile"]) >= {"perturbed"}


@pytest.mark.ray
def test_a_fit_above_max_error_fails_loudly_and_writes_nothing_unless_forced(inputs: dict[str, Path]) -> None:
    args = ("--trials", "2", "--max-error", "0.0001", "--progress", "none")
    proc = calibrate(inputs, *args, out="strict.yaml")
    assert proc.returncode == 1
    assert "FIT FAILED" in proc.stderr and "NOT written" in proc.stderr
    assert not (inputs["dir"] / "strict.yaml").exists() and not (inputs["dir"] / "strict.fit.txt").exists()
    assert "measured vs simulated" in proc.stdout  # the evidence is still printed

    forced = calibrate(inputs, *args, "--force", out="strict.yaml")
    assert forced.returncode == 1 and "FIT FAILED" in forced.stderr
    data = yaml.safe_load((inputs["dir"] / "strict.yaml").read_text())
    assert data["fitted_to"]["passed"] is False and data["description"].startswith("FIT FAILED")
    assert "FIT FAILED" in (inputs["dir"] / "strict.fit.txt").read_text()


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 120) -> list[str]:
    """Read the process's stderr until a line matches ``pattern``; returns the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r} in {''.join(lines)!r}")


def test_an_interrupted_or_killed_fit_continues_with_the_same_command(tmp_path: Path, inputs: dict[str, Path]) -> None:
    store = tmp_path / "store"
    args = ("calibrate", str(inputs["csv"]), "--base", str(inputs["base"]), "--fit", "fault_ns,touch_user_ns",
            "--out", str(tmp_path / "p.yaml"), "--store", str(store), "--trials", "14", "--in-process", "--max-error", "1")
    # Ctrl-C: the session stops cleanly and says how to continue
    proc = start_flushsweep(*args)
    wait_for_line(proc, r"trial #2:")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again" in err
    # SIGKILL: no cleanup at all
    proc = start_flushsweep(*args)
    wait_for_line(proc, r"trial #6:")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "p.yaml").exists()

    done = flushsweep(*args)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["fitted_to"]["trials"] == 14
    from storage import open_store

    with open_store(store, readonly=True) as s:
        (sweep,) = s.sweeps()
        rows = s.to_pandas(sweep=sweep.name)
        assert len(rows) == len(set(rows["run_id"]))  # nothing stored twice
        assert s.progress(sweep.name).get("done") == len(rows) and sweep.status == "done"


@pytest.mark.parametrize(
    ("csv_text", "fit", "expected"),
    [
        ("vcpus,pcpus,real_s,cores\n8,4,0.05,2\n", "fault_ns", "column 'cores'"),
        ("vcpus,pcpus,real_s,sys_s\n8,4,,\n", "fault_ns", "row 1"),
        ("vcpus,pcpus,real_s\n8,4,0.05\n", "fault_ns,hypercall_ns", "1 fitted figure(s) cannot determine 2 constants"),
        ("vcpus,pcpus,real_s\n8,4,0.05\n", "fault", "did you mean 'fault_ns'"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_is_stored(tmp_path: Path, csv_text: str, fit: str, expected: str) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(csv_text)
    proc = flushsweep("calibrate", str(csv), "--base", "literature", "--fit", fit, "--out", str(tmp_path / "p.yaml"),
                      "--store", str(tmp_path / "store"))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("flushsweep calibrate: error:") and expected in line
    assert not (tmp_path / "store").exists() and not (tmp_path / "p.yaml").exists()


def test_help_and_an_unknown_constant_list_every_constant_with_its_literature_value(tmp_path: Path) -> None:
    from workers import cost_names

    literature = load_profile("literature")
    shown = flushsweep("calibrate", "--help", env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    listing = shown.stdout.split("cost constants for --fit", 1)[1].splitlines()[1:]
    values = {ln.split()[0]: float(ln.split()[1]) for ln in listing if ln.startswith("  ") and ln.split()}
    assert values == {n: literature.cost(n) for n in cost_names()}

    csv = tmp_path / "m.csv"
    csv.write_text("vcpus,pcpus,real_s\n8,4,0.05\n")
    proc = flushsweep("calibrate", str(csv), "--base", "literature", "--fit", "bogus_ns", "--out", str(tmp_path / "p.yaml"),
                      "--store", str(tmp_path / "store"))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "'bogus_ns' is not a cost constant" in line
    assert all(f"{n} {literature.cost(n):.10g}" in line for n in cost_names())
