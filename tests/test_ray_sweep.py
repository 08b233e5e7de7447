"""Sweeps on real Ray: a worker killed mid-sweep, a driver SIGKILLed then resumed, two drivers on one
PostgreSQL database, and a two-node cluster on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sweep import RunOptions, execute_sweep, expand, parse_spec, start_sweep
from sweep_fixtures import (  # noqa: F401 - fixtures
    REPO,
    flushsweep,
    start_flushsweep,
    stored_run_ids,
    sweep_store,
    wait_until,
    write_spec,
)

pytestmark = pytest.mark.ray

#: ~0.1 s per run on one core: long enough to be caught mid-task.
MEDIUM = "{workload: mmap-munmap, vcpus: 16, pcpus: 4, threads: 17, iterations: 20, pages: 1024}"


def descendants(root: int) -> list[int]:
    """Process ids below ``root`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_identity(pid: int) -> tuple[str, str] | None:
    """(start time, state) of a process from /proc, so a reused pid is not mistaken for it; None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19], fields[0]


def survivors(started: dict[int, str]) -> list[str]:
    """The processes of ``started`` (pid -> start time) that still run (zombies do not count), by command line."""
    left = []
    for pid, start in started.items():
        now = process_identity(pid)
        if now is not None and now[0] == start and now[1] != "Z":
            left.append(f"{pid} {cmdline(pid)[:80]}")
    return left


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the session the test started (the process and everything in its group)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def test_killed_worker_process_has_its_tasks_retried(sweep_store: Any) -> None:
    from sweep import RayExecutor

    spec = parse_spec(f"name: kill-worker\nbase: {MEDIUM}\naxes:\n  seed: {{from: 0, to: 29}}\n")
    exp = expand(spec)
    start_sweep(sweep_store, spec, exp)
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in descendants(os.getpid()):
                if cmdline(pid).startswith("ray::_ray_batch"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    with RayExecutor(workers=2, max_retries=3) as executor:
        killer.start()
        report = execute_sweep(sweep_store, "kill-worker", executor, options=RunOptions(max_batch=1))
    killer.join(timeout=5)
    assert killed, "no busy Ray worker was found to kill"
    assert report.status == "done" and report.done == 30 and report.failed == 0
    assert report.retried == 0  # Ray re-ran the lost task (max_retries): no attempt was recorded as failed
    ids = stored_run_ids(sweep_store.store_dir, sweep="kill-worker")
    assert len(ids) == len(set(ids)) == 30
    assert set(ids) == {r.run_id for r in exp.runs}


def test_sigkilled_driver_then_resume_stores_every_run_exactly_once(tmp_path: Path) -> None:
    """And the embedded Ray the driver started ends with it: GCS, raylet, agents, workers, within seconds."""
    from storage import open_store

    # enough runs that the driver cannot finish between "8 stored" and the SIGKILL, on a fast machine too
    spec = write_spec(tmp_path / "crash.yaml", f"name: crash\nbase: {MEDIUM}\naxes:\n  seed: {{from: 0, to: 399}}\n")
    store_dir = tmp_path / "store"
    driver = start_flushsweep("run", str(spec), "--store", str(store_dir), "--workers", "2", "--progress", "lines")
    try:
        def some_done() -> bool:
            if driver.poll() is not None:
                raise AssertionError(f"driver ended early: {driver.communicate()}")
            try:
                with open_store(store_dir, readonly=True) as s:
                    return s.progress("crash")["done"] >= 8
            except Exception:  # the store or the sweep is not created yet
                return False

        wait_until(some_done, timeout=180, interval=0.3, what="8 runs stored")
        ray_processes = {pid: process_identity(pid)[0] for pid in descendants(driver.pid) if process_identity(pid)}
        names = " ".join(cmdline(pid) for pid in ray_processes)
        assert "raylet" in names and "ray::DashboardAgent" in names and "ray::RuntimeEnvAgent" in names, names
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: its embedded Ray must end too
        driver.wait(timeout=30)
        # Ray alone leaves its agents a minute (they retry reporting to the dead GCS); the watchdog ends them.
        try:
            wait_until(lambda: not survivors(ray_processes), timeout=15, interval=0.25, what="the embedded Ray to end")
        except AssertionError:
            raise AssertionError(f"outlived the SIGKILLed driver by 15 s: {survivors(ray_processes)}") from None
    finally:
        time.sleep(3)
        stop_group(driver)  # whatever the driver started and is still around

    with open_store(store_dir, readonly=True) as s:
        before = s.progress("crash")
        assert s.find_sweep("crash").status == "running"  # it never got to say otherwise
    assert 8 <= before["done"] < 400

    resumed = flushsweep("resume", "crash", "--store", str(store_dir), "--workers", "2", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    assert "sweep crash: done" in resumed.stdout
    ids = stored_run_ids(store_dir, sweep="crash")
    assert len(ids) == 400 and len(set(ids)) == 400
    assert set(ids) == {r.run_id for r in expand(parse_spec(spec.read_text())).runs}
    with open_store(store_dir, readonly=True) as s:
        assert s.progress("crash") == {"pending": 0, "running": 0, "done": 400, "failed": 0}
        assert s.find_sweep("crash").status == "done"


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    from storage import open_store

    spec = write_spec(tmp_path / "intr.yaml", f"name: intr\nbase: {MEDIUM}\naxes:\n  seed: {{from: 0, to: 399}}\n")
    store_dir = tmp_path / "store"
    driver = start_flushsweep("run", str(spec), "--store", str(store_dir), "--workers", "2", "--progress", "lines")
    try:
        def some_done() -> bool:
            try:
                with open_store(store_dir, readonly=True) as s:
                    return s.progress("intr")["done"] >= 5
            except Exception:  # not created yet
                return False

        wait_until(some_done, timeout=180, interval=0.3, what="5 runs stored")
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
        out, err = driver.communicate(timeout=120)
    finally:
        stop_group(driver)
    assert driver.returncode == 130, err
    assert "sweep intr: interrupted" in out and "flushsweep resume intr" in err
    with open_store(store_dir, readonly=True) as s:
        counts = s.progress("intr")
        assert s.find_sweep("intr").status == "interrupted"
    assert counts["running"] == 0 and counts["failed"] == 0 and counts["done"] + counts["pending"] == 400
    assert len(stored_run_ids(store_dir, sweep="intr")) == counts["done"]  # every stored row is a done run

    resumed = flushsweep("resume", "intr", "--store", str(store_dir), "--workers", "2", "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    ids = stored_run_ids(store_dir, sweep="intr")
    assert len(ids) == len(set(ids)) == 400


@pytest.mark.postgres
def test_two_drivers_on_one_postgres_database_store_shared_runs_once(tmp_path: Path, pg_url: str) -> None:
    """pg_url (tests/conftest.py) is a fresh database; both drivers share it and one store directory."""
    a = write_spec(tmp_path / "a.yaml", f"name: left\nbase: {MEDIUM}\naxes:\n  seed: {{from: 0, to: 29}}\n")
    b = write_spec(tmp_path / "b.yaml", f"name: right\nbase: {MEDIUM}\naxes:\n  seed: {{from: 10, to: 39}}\n")
    store_dir = tmp_path / "store"
    common = ["--store", str(store_dir), "--db", pg_url, "--workers", "1", "--progress", "none"]
    drivers = [start_flushsweep("run", str(spec), *common) for spec in (a, b)]
    try:
        outputs = [d.communicate(timeout=300) for d in drivers]
    finally:
        for d in drivers:
            stop_group(d)
    for d, (out, err) in zip(drivers, outputs):
        assert d.returncode == 0, err
    all_ids = stored_run_ids(store_dir, pg_url)
    assert len(all_ids) == len(set(all_ids)) == 40  # seeds 0..39; seeds 10..29 shared
    for name, seeds in (("left", range(0, 30)), ("right", range(10, 40))):
        ids = stored_run_ids(store_dir, pg_url, sweep=name)
        assert len(ids) == len(set(ids)) == len(seeds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sweep_on_a_two_node_loopback_cluster_uses_both_nodes(tmp_path: Path) -> None:
    ray_bin = str(REPO / ".venv" / "bin" / "ray")
    port = free_port()
    # `ray start` turns on token authentication; every client of the cluster must then say so too
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 1024 * 1024), "--block"]
    ray_tmp = tempfile.mkdtemp(prefix="fsray", dir="/tmp")  # short: Ray's unix socket paths must stay < 108 bytes
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", ray_tmp, *common],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    nodes = [head]
    try:
        address = f"127.0.0.1:{port}"
        wait_until(lambda: _ray_answers(address, env), timeout=90, interval=1, what="the head node")
        worker = subprocess.Popen(
            [ray_bin, "start", "--address", address, "--resources", '{"second_node": 1}', *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        nodes.append(worker)
        wait_until(lambda: _ray_node_count(address, env) >= 2, timeout=90, interval=1, what="the second node")

        spec = write_spec(tmp_path / "multi.yaml", f"name: multi\nbase: {MEDIUM}\naxes:\n  seed: {{from: 0, to: 23}}\n")
        store_dir = tmp_path / "store"
        result = flushsweep("run", str(spec), "--address", address, "--store", str(store_dir), "--progress", "none", env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "2 node(s)" in result.stderr

        from storage import open_store

        with open_store(store_dir, readonly=True) as s:
            rows = s.results(sweep="multi").select(["run_id", "node"]).to_pylist()
        assert len(rows) == len({r["run_id"] for r in rows}) == 24
        assert len({r["node"] for r in rows}) == 2  # both nodes computed runs, and each run says where
    finally:
        for proc in reversed(nodes):  # `ray start --block` drains, then stops its node's processes
            stop_group(proc, signal.SIGTERM)
        for proc in reversed(nodes):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            stop_group(proc)  # the session the test started, whatever is left of it
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_joining_a_token_auth_cluster_without_its_token_fails_fast_naming_the_fix(tmp_path: Path) -> None:
    """A head with RAY_AUTH_MODE=token on loopback; clients without the mode, with a wrong token and
    with none get one line naming RAY_AUTH_MODE=token / RAY_AUTH_TOKEN in seconds (Ray alone: 20 s of
    gRPC errors, then "Failed to connect"); the right token joins."""
    ray_bin = str(REPO / ".venv" / "bin" / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    token = os.urandom(16).hex()
    home = tmp_path / "home"
    home.mkdir()  # no ~/.ray/auth_token: a client has only the token its environment gives it
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    base.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", HOME=str(home))
    head_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    ray_tmp = tempfile.mkdtemp(prefix="fsauth", dir="/tmp")  # short: Ray's unix socket paths must stay < 108 bytes
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
         "--include-dashboard", "false", "--object-store-memory", str(100 * 1024 * 1024), "--temp-dir", ray_tmp, "--block"],
        env=head_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_until(lambda: _ray_answers(address, head_env), timeout=90, interval=1, what="the token-auth head")
        spec = write_spec(tmp_path / "auth.yaml", f"name: auth\nbase: {MEDIUM}\naxes:\n  seed: [0, 1]\n")
        refused = {
            "no RAY_AUTH_MODE": (base, "uses token authentication; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN="),
            "a wrong token": ({**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}, "set RAY_AUTH_TOKEN="),
            "no token": ({**base, "RAY_AUTH_MODE": "token"}, "set RAY_AUTH_TOKEN="),
        }
        for case, (env, fix) in refused.items():
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "sweep", "run", str(spec), "--address", address, "--store", str(tmp_path / "store"),
                 "--progress", "none"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
            )
            took = time.monotonic() - started
            *before, error = result.stderr.strip().splitlines()  # the plan's line, then the error
            assert result.returncode == 2, (case, result.stderr)
            assert error.startswith(f"flushsweep run: error: --address: could not join the Ray cluster at {address}: ")
            assert fix in error and token not in result.stderr, (case, error)
            assert before == ["auth: 2 runs from 2 combinations"], (case, before)  # no gRPC errors
            assert took < 12, f"{case}: took {took:.1f} s"
        joined = subprocess.run(
            [sys.executable, "-c", f"from sweep._ray import RayExecutor; print(RayExecutor(address={address!r}).describe())"],
            cwd=REPO, env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, capture_output=True, text=True,
            timeout=120,
        )
        assert joined.returncode == 0 and f"cluster {address}, 1 workers, 1 node(s)" in joined.stdout, joined.stderr
    finally:
        stop_group(head, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        stop_group(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _ray_status(address: str, env: dict[str, str]) -> str:
    ray_bin = str(REPO / ".venv" / "bin" / "ray")
    out = subprocess.run([ray_bin, "status", "--address", address], capture_output=True, text=True, timeout=60, env=env)
    return out.stdout if out.returncode == 0 else ""


def _ray_answers(address: str, env: dict[str, str]) -> bool:
    return "Node status" in _ray_status(address, env)


def _ray_node_count(address: str, env: dict[str, str]) -> int:
    status = _ray_status(address, env)
    active = status.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in status else ""
    return sum(1 for line in active.splitlines() if "node_" in line)
