"""Storage speed: result rows written per second, and one aggregate query, on SQLite and PostgreSQL.

Writes ``--rows`` result rows (default 1,000,000; half baseline, half PV paired to
them) in batches of ``--batch`` (default 1,000) through the sweep driver's write
path, then times the PV-benefit aggregate (grouped by vcpus and overcommit) over
the ``paired`` view.

Each batch is what the driver receives from its workers: the task's rows packed
into one Arrow table by ``sweep._task.pack_outcomes`` (on the workers, in parallel,
so not timed here), committed with ``commit_results`` as the sweep controller does.
A secondary figure, on ``--secondary-rows`` rows: lists of dicts (what the driver
was handed before workers packed their rows, and what single-run tasks still send).
The query is timed on the store as written, one file per batch; a sweep that
finishes is compacted by ``execute_sweep``, so the bench then compacts and times
the query again.

Targets: >= 200,000 rows/s written; < 1 s for the query. Only the measured calls are
timed (building rows and registering runs are reported separately).

    .venv/bin/python bench/storage.py                  # both backends, 1,000,000 rows
    .venv/bin/python bench/storage.py --rows 100000 --backend sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import NewRun, open_store  # noqa: E402
from sweep._task import RunOutcome, pack_outcomes  # noqa: E402

WRITE_TARGET_ROWS_S = 200_000
QUERY_TARGET_S = 1.0
REGISTER_CHUNK = 50_000
QUERY = """
SELECT vcpus, overcommit, count(*) AS pairs,
       avg(benefit_real) AS benefit_real, avg(benefit_sys) AS benefit_sys, avg(benefit_p99) AS benefit_p99
FROM paired
GROUP BY vcpus, overcommit
ORDER BY vcpus, overcommit
"""

VCPUS = (8, 16, 32, 64, 128, 256)
PCPUS = (4, 8, 12, 24)


def run_id(i: int) -> str:
    return hashlib.sha256(f"bench-run-{i}".encode()).hexdigest()[:32]


def config(i: int) -> dict:
    """Run ``i``: even i is a native baseline, odd i its hyperv-pv partner."""
    point = i // 2
    return {
        "pcpus": PCPUS[point % len(PCPUS)], "host_slice_us": 3000, "background_vcpus": 0, "ple": True,
        "ple_window_us": 20, "vcpus": VCPUS[(point // len(PCPUS)) % len(VCPUS)], "topology": "auto",
        "guest_os": "windows-2016", "enlightenments": True, "flush_mode": "hyperv-pv" if i % 2 else "native",
        "hv_semantics": "kvm-current", "workload": "mmap-munmap", "threads": 65, "iterations": 50, "pages": 16384,
        "sleep_max_us": 100, "duration_s": 1.0, "profile": "literature", "seed": point // (len(PCPUS) * len(VCPUS)),
    }


def new_run(i: int) -> NewRun:
    return NewRun(run_id(i), config(i), baseline_run_id=run_id(i - 1) if i % 2 else None)


def result_row(i: int, rng: random.Random) -> dict:
    """A row shaped like the sweep driver's: run_id, RunConfig fields, RunResult metrics, bookkeeping."""
    pv = i % 2 == 1
    real = rng.uniform(1.0, 20.0) * (0.6 if pv else 1.0)
    return {
        "run_id": run_id(i), **config(i),
        "outcome": "ok", "crash_reason": "", "effective_vcpus": 64, "real_s": real,
        "user_s": rng.uniform(0.1, 5.0), "sys_s": real * rng.uniform(1.0, 30.0), "ops": rng.randrange(1000, 10**5),
        "ops_per_s": rng.uniform(100.0, 5000.0), "shootdowns": rng.randrange(10**6), "ipis": rng.randrange(10**7),
        "vm_exits": rng.randrange(10**7), "hypercalls": rng.randrange(10**6), "hc_flush_space": rng.randrange(10**5),
        "hc_flush_list": rng.randrange(10**5), "hc_flush_space_ex": rng.randrange(10**5),
        "hc_flush_list_ex": rng.randrange(10**5), "hc_errors": 0, "full_flushes": rng.randrange(10**5),
        "fine_flushes": rng.randrange(10**6), "deferred_flushes": rng.randrange(10**5),
        "spin_s": rng.uniform(0, 10), "lock_wait_s": rng.uniform(0, 10), "lat_p50_us": rng.uniform(1, 50),
        "lat_p90_us": rng.uniform(50, 200), "lat_p99_us": rng.uniform(200, 5000), "lat_max_us": rng.uniform(5000, 9000),
        "preemptions": rng.randrange(10**5), "ple_exits": rng.randrange(10**6), "pcpu_util": rng.random(),
        "sim_events": rng.randrange(10**7), "engine_wall_s": rng.uniform(0.1, 3.0),
        "baseline_run_id": run_id(i - 1) if pv else None, "node": f"node-{i % 4}",
    }


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fs_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(libpq).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def worker_batch(ids: range, rng: random.Random) -> "object":
    """A batch as a worker returns it: its rows packed into one Arrow table."""
    outcomes = [RunOutcome(run_id(i), result_row(i, rng), None, f"node-{i % 4}", 0.1) for i in ids]
    table = pack_outcomes(outcomes).table
    assert table is not None
    return table


def register(store: object, sweep: str, rows: int) -> float:
    store.begin_sweep(sweep, f"bench {rows} rows")  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for start in range(0, rows, REGISTER_CHUNK):
        store.add_runs(sweep, [new_run(i) for i in range(start, min(rows, start + REGISTER_CHUNK))])  # type: ignore[attr-defined]
    return rows / (time.perf_counter() - t0)


def secondary(db: str | None, store_dir: Path, rows: int, batch: int) -> dict:
    """Lists of dicts through ``commit_results``; building them is not timed."""
    out: dict[str, float] = {}
    with open_store(store_dir, db) as store:
        register(store, "more", rows)
        rng = random.Random(7)
        spent, stored = 0.0, 0
        for start in range(0, rows, batch):
            data = [result_row(i, rng) for i in range(start, min(rows, start + batch))]
            t0 = time.perf_counter()
            stored += store.commit_results("more", data)
            spent += time.perf_counter() - t0
        out["dicts_rows_s"] = stored / spent
    return out


def bench(backend: str, db: str | None, store_dir: Path, rows: int, batch: int, query_runs: int) -> dict:
    out: dict[str, float] = {}
    with open_store(store_dir, db) as store:
        out["register_runs_s"] = register(store, "bench", rows)

        rng = random.Random(42)
        batches = [worker_batch(range(s, min(rows, s + batch)), rng) for s in range(0, rows, batch)]  # the workers' part
        spent = 0.0
        for table in batches:
            t0 = time.perf_counter()
            stored = store.commit_results("bench", table)
            spent += time.perf_counter() - t0
            assert stored == table.num_rows
        del batches
        out["write_rows_s"] = rows / spent
        out["write_s"] = spent

        times = []
        for _ in range(query_runs):
            t0 = time.perf_counter()
            table = store.sql(QUERY)
            times.append(time.perf_counter() - t0)
        assert table.num_rows > 0 and sum(table.column("pairs").to_pylist()) == rows // 2
        out["query_first_s"] = times[0]
        out["query_s"] = statistics.median(times)

        out["files_before"] = store.summary()["files"]
        t0 = time.perf_counter()
        store.compact()
        out["compact_s"] = time.perf_counter() - t0
        times = []
        for _ in range(query_runs):
            t0 = time.perf_counter()
            store.sql(QUERY)
            times.append(time.perf_counter() - t0)
        out["query_compacted_s"] = statistics.median(times)
        out["files_after"] = store.summary()["files"]
    return out


def report(backend: str, r: dict) -> None:
    w, q = r["write_rows_s"], r["query_s"]
    print(f"{backend:10} write  {w:12,.0f} rows/s   target >= {WRITE_TARGET_ROWS_S:,}   ratio {w / WRITE_TARGET_ROWS_S:.2f} "
          f"({'ok' if w >= WRITE_TARGET_ROWS_S else 'BELOW TARGET'})")
    print(f"{backend:10} query  {q:12.3f} s        target <  {QUERY_TARGET_S:g} s        ratio {q / QUERY_TARGET_S:.2f} "
          f"({'ok' if q < QUERY_TARGET_S else 'ABOVE TARGET'}; first run {r['query_first_s']:.3f} s)")
    if "dicts_rows_s" in r:
        print(f"{'':10} secondary ({r['secondary_rows']:,} rows): {r['dicts_rows_s']:,.0f} rows/s with lists of dicts")
    print(f"{'':10} also: registering runs {r['register_runs_s']:,.0f} runs/s; compact {r['files_before']:.0f} "
          f"-> {r['files_after']:.0f} file(s) in {r['compact_s']:.1f} s, query then {r['query_compacted_s']:.3f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("FLUSHSWEEP_TEST_PG_URL") or
                        "postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--query-runs", type=int, default=3)
    parser.add_argument("--secondary-rows", type=int, default=100_000,
                        help="rows for the secondary figure with lists of dicts (0: skip it)")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.batch < 1:
        parser.error("--rows must be >= 2 and --batch >= 1")
    print(f"storage bench: {args.rows:,} result rows in batches of {args.batch:,} ({os.cpu_count()} CPUs)")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
            store_dir = Path(tmp) / "store"
            if backend == "sqlite":
                result = bench(backend, None, store_dir, args.rows, args.batch, args.query_runs)
                if args.secondary_rows:
                    result.update(secondary(None, Path(tmp) / "sync", args.secondary_rows, args.batch))
            else:
                with postgres_database(args.pg_url) as url:
                    result = bench(backend, url, store_dir, args.rows, args.batch, args.query_runs)
                if args.secondary_rows:
                    with postgres_database(args.pg_url) as url:
                        result.update(secondary(url, Path(tmp) / "sync", args.secondary_rows, args.batch))
            result["secondary_rows"] = args.secondary_rows
        report(backend, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
