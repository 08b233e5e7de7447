"""Engine speed: the 2018 seed scenario, and how cost grows with VM size.

Prints the wall time to simulate the seed scenario (median of 5, one core;
target <= 1.0 s, i.e. >= 20x faster than the 22 s experiment), events/s, and a
scaling table over vcpus 16..1024 at the seed's overcommit (128 vCPUs : 12 pCPUs).

    python bench/engine.py [--repeat 5] [--max-vcpus 1024] [--iterations 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

from workers import RunConfig, simulate
from workers.profiles import find_profile

TARGET_S = 1.0
EXPERIMENT_S = 22.46


def seed_configs(profile: str) -> dict[str, RunConfig]:
    base = dict(vcpus=128, topology="64x1x2", pcpus=12, threads=65, iterations=50, pages=16384,
                hv_semantics="kvm-2018", profile=profile)
    return {
        "native": RunConfig(**base, flush_mode="native", enlightenments=False),
        "hyperv-pv": RunConfig(**base, flush_mode="hyperv-pv", enlightenments=True),
    }


def timed(cfg: RunConfig) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = simulate(cfg)
    return time.perf_counter() - t0, r.sim_events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-vcpus", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=10, help="iterations per thread in the scaling table")
    args = ap.parse_args()
    try:
        find_profile("seed-ws2016")
        profile = "seed-ws2016"
    except Exception:
        profile = "literature"

    print(f"seed scenario (128 vCPUs 64x1x2 on 12 pCPUs, 65 threads x 50 x 16384 pages, profile {profile})")
    for mode, cfg in seed_configs(profile).items():
        simulate(cfg)  # warm up imports and caches
        runs = [timed(cfg) for _ in range(args.repeat)]
        wall = statistics.median(w for w, _ in runs)
        events = runs[0][1]
        print(
            f"  {mode:10s} wall {wall:.3f} s (median of {args.repeat})  target <= {TARGET_S:.1f} s  "
            f"ratio {wall / TARGET_S:.2f}  speed-up vs experiment {EXPERIMENT_S / wall:.0f}x  "
            f"events {events}  {events / wall:,.0f} events/s"
        )

    print(f"\nscaling at 128:12 overcommit, threads = vcpus/2 + 1, {args.iterations} iterations x 16384 pages")
    print(f"  {'vcpus':>5} {'pcpus':>5} {'mode':10s} {'wall s':>8} {'events':>9} {'events/s':>10} {'us/event':>8} {'ms/shootdown':>12}")
    vcpus = 16
    while vcpus <= args.max_vcpus:
        pcpus = max(1, round(vcpus * 12 / 128))
        for mode, enl in (("native", False), ("hyperv-pv", True)):
            cfg = RunConfig(vcpus=vcpus, topology="smt2", pcpus=pcpus, threads=vcpus // 2 + 1, iterations=args.iterations,
                            pages=16384, flush_mode=mode, enlightenments=enl, hv_semantics="kvm-2018", profile=profile)
            t0 = time.perf_counter()
            r = simulate(cfg)
            wall = time.perf_counter() - t0
            print(f"  {vcpus:5d} {pcpus:5d} {mode:10s} {wall:8.3f} {r.sim_events:9d} {r.sim_events / wall:10,.0f} "
                  f"{wall / r.sim_events * 1e6:8.2f} {wall / max(r.shootdowns, 1) * 1e3:12.3f}")
        vcpus *= 2


if __name__ == "__main__":
    main()
