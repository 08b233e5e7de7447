"""Shared fixtures: real stores on real databases.

- ``store_dir``: an empty directory for a store.
- ``sqlite_url``: a SQLite file URL (outside the store directory).
- ``pg_url``: a fresh PostgreSQL database per test on the server in
  ``FLUSHSWEEP_TEST_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/test),
  dropped afterwards. Skips when no server answers, except with ``CI=true``: then it fails.
- ``db_url``: parametrised over both, so a test runs on SQLite and on PostgreSQL.
- ``tmp_store``: an open store on SQLite (the common case); ``any_store``: on both.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

DEFAULT_TEST_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_admin_url() -> str:
    return os.environ.get("FLUSHSWEEP_TEST_PG_URL") or DEFAULT_TEST_PG_URL


def _libpq(url: str) -> str:
    """A SQLAlchemy-style URL as a libpq conninfo URI (drop a '+driver' suffix)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'meta.sqlite'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a brand-new PostgreSQL database, dropped (connections and all) after the test."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin_url = _libpq(_pg_admin_url())
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {make_url(admin_url).render_as_string()} does not answer: {exc}".splitlines()[0]
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    name = f"fs_test_{uuid.uuid4().hex[:16]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def tmp_store(store_dir: Path, sqlite_url: str) -> Iterator["object"]:
    """An open read-write store on SQLite."""
    from storage import open_store

    with open_store(store_dir, sqlite_url) as store:
        yield store


@pytest.fixture
def any_store(store_dir: Path, db_url: str) -> Iterator["object"]:
    """An open read-write store, once on SQLite and once on PostgreSQL."""
    from storage import open_store

    with open_store(store_dir, db_url) as store:
        yield store


class ResultRows:
    """Realistic result rows (RunConfig vocabulary plus metrics) for storage tests.

    Values derive from the index through a seeded RNG, so tests compute what they
    expect from the rows they wrote, never from constants.
    """

    VCPUS = (16, 32, 64, 128)

    def config(self, i: int, *, flush_mode: str = "native") -> dict:
        return {
            "pcpus": 12, "host_slice_us": 3000, "background_vcpus": 0, "ple": True, "ple_window_us": 20,
            "vcpus": self.VCPUS[i % len(self.VCPUS)], "topology": "auto", "guest_os": "windows-2016",
            "enlightenments": True, "flush_mode": flush_mode, "hv_semantics": "kvm-current", "host_kvm": "current", "vms": 1,
            "workload": "mmap-munmap", "threads": 65, "iterations": 50, "pages": 16384,
            "sleep_max_us": 100, "duration_s": 1.0, "profile": "literature", "seed": i,
        }

    def run_id(self, config: dict) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:32]

    def pairs(self, n: int, start: int = 0) -> list:
        """``n`` baseline (native) runs, each followed by its PV (hyperv-pv) partner."""
        from storage import NewRun

        runs = []
        for i in range(start, start + n):
            base_cfg = self.config(i)
            base = NewRun(self.run_id(base_cfg), base_cfg)
            pv_cfg = self.config(i, flush_mode="hyperv-pv")
            runs += [base, NewRun(self.run_id(pv_cfg), pv_cfg, baseline_run_id=base.run_id)]
        return runs

    def row(self, run, *, node: str = "node-1", **overrides) -> dict:
        import random

        rng = random.Random(run.run_id)
        crash = run.config["vcpus"] == 128 and run.config["flush_mode"] == "native" and run.config["seed"] % 3 == 0
        metrics = {
            "outcome": "crash" if crash else "ok",
            "crash_reason": "PAGE_FAULT_IN_NONPAGED_AREA" if crash else "",
            "effective_vcpus": min(run.config["vcpus"], 64),
            "real_s": rng.uniform(1.0, 20.0), "user_s": rng.uniform(0.1, 5.0), "sys_s": rng.uniform(0.5, 50.0),
            "ops": rng.randrange(1000, 100000), "ops_per_s": rng.uniform(100.0, 5000.0), "ops_per_s_min": rng.uniform(50.0, 100.0),
            "shootdowns": rng.randrange(0, 10**6), "hypercalls": rng.randrange(0, 10**6),
            "lat_p50_us": rng.uniform(1, 50), "lat_p99_us": rng.uniform(50, 5000),
            "pcpu_util": rng.random(), "engine_wall_s": rng.random(),
        }
        return {"run_id": run.run_id, **run.config, **metrics, "baseline_run_id": run.baseline_run_id,
                "node": node, **overrides}

    def rows(self, runs, **kw) -> list[dict]:
        return [self.row(r, **kw) for r in runs]

    def seed(self, store, sweep: str = "sw") -> list:
        """Sweep ``sweep`` with 8 committed baseline/PV pairs in two batches (nodes node-1, node-2)."""
        runs = self.pairs(8)
        store.begin_sweep(sweep, f"name: {sweep}\n")
        store.add_runs(sweep, runs)
        store.mark_running([r.run_id for r in runs])
        store.commit_results(sweep, self.rows(runs[:10]))
        store.commit_results(sweep, self.rows(runs[10:], node="node-2"))
        return runs


@pytest.fixture
def result_rows() -> ResultRows:
    return ResultRows()


@pytest.fixture
def seeded_store(any_store, result_rows):
    """(store, runs): sweep 'sw' with 8 committed baseline/PV pairs, on SQLite and on PostgreSQL."""
    return any_store, result_rows.seed(any_store)


@pytest.fixture
def seeded_sqlite_store(tmp_store, result_rows):
    """(store, runs) like ``seeded_store``, on SQLite only (for checks that never reach the database)."""
    return tmp_store, result_rows.seed(tmp_store)
