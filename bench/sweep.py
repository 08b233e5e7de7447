"""Sweep throughput and service overhead: ~100 ms runs on Ray workers vs a plain serial loop.

    .venv/bin/python bench/sweep.py [--runs 60] [--workers 2] [--run-ms 100]

Prints:
- speedup: serial loop time / sweep time (Ray already started; target >= 1.8x with 2 workers);
- overhead: the share of worker capacity not spent simulating, per run, as a
  percentage of run time: (workers x sweep time - sum of run times) / sum of run times
  (scheduling, batching, serialisation, waiting on the driver's commits; target <= 5%);
- the driver's time in store calls per run, for the breakdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPEEDUP_TARGET = 1.8
OVERHEAD_TARGET_PCT = 5.0


def calibrated_config(run_ms: float) -> Any:
    """An mmap/munmap run whose simulation takes about ``run_ms`` on this machine."""
    from workers import RunConfig, simulate

    cfg = RunConfig(workload="mmap-munmap", vcpus=16, pcpus=4, threads=17, iterations=20, pages=1024)
    simulate(cfg)  # warm imports and caches
    for _ in range(4):
        t0 = time.perf_counter()
        simulate(cfg)
        took = time.perf_counter() - t0
        iterations = max(1, round(cfg.iterations * (run_ms / 1000) / took))
        if abs(iterations - cfg.iterations) <= 1:
            break
        cfg = cfg.replace(iterations=iterations)
    return cfg


#: Ray runs task workers at this niceness (its ``worker_niceness`` default); the baselines use the same,
#: so other load on the machine weighs on both sides alike.
WORKER_NICENESS = 15


def _simulate_all(configs: list[dict[str, Any]]) -> float:
    from workers import RunConfig, simulate

    os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICENESS)
    t0 = time.perf_counter()
    for c in configs:
        simulate(RunConfig.from_dict(c))
    return time.perf_counter() - t0


def serial_seconds(configs: list[dict[str, Any]]) -> float:
    """The plain serial loop, in one (warm) process at the workers' niceness."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool:
        pool.submit(_simulate_all, configs[:1]).result()
        return pool.submit(_simulate_all, configs).result()


def process_pool_seconds(configs: list[dict[str, Any]], workers: int) -> float:
    """The same runs split over plain worker processes (no Ray, no store): this machine's parallel ceiling."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_simulate_all, [configs[:1]] * workers))  # start and warm the processes
        t0 = time.perf_counter()
        list(pool.map(_simulate_all, [configs[i::workers] for i in range(workers)]))
        return time.perf_counter() - t0


class TimedStore:
    """The real store, with the wall time of every call added up (the driver's storage cost)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is reported")
    args = parser.parse_args()

    from storage import open_store
    from sweep import RayExecutor, RunOptions, execute_sweep, expand, parse_spec, start_sweep

    base = calibrated_config(args.run_ms)
    fields = {k: v for k, v in base.to_dict().items() if k in ("workload", "vcpus", "pcpus", "threads", "iterations", "pages")}
    base_text = str(fields).replace("'", "")
    load_before = os.getloadavg()[0]
    serial, pool, sweeps = [], [], []  # seconds per round; sweeps: (seconds, report, driver CPU, store seconds)

    with tempfile.TemporaryDirectory(prefix="flushsweep-bench-") as tmp, open_store(Path(tmp) / "store") as raw:
        t_ray = time.perf_counter()
        with RayExecutor(workers=args.workers) as executor:
            ray_start_s = time.perf_counter() - t_ray
            # Ray starts worker processes (and they import the engine) on first use: warm them up, untimed
            warm = parse_spec(f"name: warmup\nbase: {{workload: cpu-bound, duration_s: 0.01}}\naxes:\n  seed: {{from: 0, to: {4 * args.workers}}}\n")
            start_sweep(raw, warm, expand(warm))
            execute_sweep(raw, "warmup", executor)
            for rnd in range(args.rounds):  # new seeds each round: a stored run would be skipped
                first = 1 + rnd * args.runs
                spec = parse_spec(f"name: bench-{rnd}\nbase: {base_text}\naxes:\n  seed: {{from: {first}, to: {first + args.runs - 1}}}\n")
                exp = expand(spec)
                configs = [r.config.to_dict() for r in exp.runs]
                serial.append(serial_seconds(configs))
                pool.append(process_pool_seconds(configs, args.workers))
                start_sweep(raw, spec, exp)
                store = TimedStore(raw)
                t1, cpu1 = time.perf_counter(), time.process_time()
                report = execute_sweep(store, spec.name, executor, options=RunOptions())
                sweeps.append((time.perf_counter() - t1, report, time.process_time() - cpu1, store.seconds))
                assert report.done == args.runs, report

    serial_s, pool_s = min(serial), min(pool)
    sweep_s, report, driver_cpu_s, store_s = min(sweeps, key=lambda x: x[0])
    per_run_ms = 1000 * serial_s / args.runs
    speedup = serial_s / sweep_s
    overhead_pct = 100.0 * (args.workers * sweep_s - report.run_time_s) / report.run_time_s
    ceiling = serial_s / pool_s
    print(f"load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(figures are only meaningful on an otherwise idle machine)")
    print(f"runs: {args.runs} x {per_run_ms:.0f} ms (serial), {args.workers} Ray workers, best of {args.rounds} rounds "
          f"(Ray start {ray_start_s:.1f} s, not counted)")
    print(f"serial loop: {serial_s:.2f} s   sweep: {sweep_s:.2f} s   ({args.runs / sweep_s:.1f} runs/s)")
    print(f"speedup: {speedup:.2f}x  (target >= {SPEEDUP_TARGET}x; ratio to target {speedup / SPEEDUP_TARGET:.2f})")
    print(
        f"overhead: {overhead_pct:.1f}% of run time per run  (target <= {OVERHEAD_TARGET_PCT}%; "
        f"ratio to target {overhead_pct / OVERHEAD_TARGET_PCT:.2f})"
    )
    print(f"  machine ceiling: {args.workers} plain processes (no Ray, no store) reach {ceiling:.2f}x; "
          f"the sweep gets {100 * speedup / ceiling:.0f}% of it")
    print(f"  driver store calls: {1000 * store_s / args.runs:.2f} ms per run ({100 * store_s / serial_s:.1f}% of run time)")
    print(f"  driver CPU: {1000 * driver_cpu_s / args.runs:.2f} ms per run ({100 * driver_cpu_s / serial_s:.1f}% of run time)")
    print(f"  rounds (s): serial {[round(x, 2) for x in serial]}, plain processes {[round(x, 2) for x in pool]}, "
          f"sweep {[round(x[0], 2) for x in sweeps]}")
    print(f"  mean run time inside workers: {1000 * report.run_time_s / report.done:.0f} ms (vs {per_run_ms:.0f} ms serial)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
