"""Fixtures and helpers for the sweep tests: real stores, real specs, real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "configs" / "profiles"


@pytest.fixture
def sweep_store(tmp_path: Path) -> Iterator[Any]:
    """A fresh SQLite-backed store in a temporary directory."""
    from storage import open_store

    with open_store(tmp_path / "store") as store:
        yield store


@pytest.fixture
def profile_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private profile directory on FLUSHSWEEP_PROFILES holding a copy of ``literature`` as ``flaky``.

    Deleting ``flaky.yaml`` after a sweep is planned makes its runs fail for real
    in the worker (the profile cannot be loaded), which is how tests get a run that raises.
    """
    d = tmp_path / "profiles"
    d.mkdir()
    shutil.copy(PROFILES / "literature.yaml", d / "flaky.yaml")
    monkeypatch.setenv("FLUSHSWEEP_PROFILES", str(d))
    return d


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def flushsweep(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a fresh interpreter), returning its output."""
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], cwd=REPO, env=cli_env(env), capture_output=True, text=True,
        timeout=timeout, **kw,
    )


def start_flushsweep(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    """Start the CLI in its own session so the test can signal it (and everything it started) by process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *args], cwd=REPO, env=cli_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, **kw,
    )


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(extra or {})
    return env


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stored_run_ids(store_dir: Path, db: str | None = None, sweep: str | None = None) -> list[str]:
    """Every run_id row in the results (duplicates included), read through a fresh read-only store."""
    from storage import open_store

    with open_store(store_dir, db, readonly=True) as store:
        table = store.results(sweep=sweep)
        return [str(x) for x in table.column("run_id").to_pylist()] if table.num_rows else []
