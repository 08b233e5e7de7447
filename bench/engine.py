"""Engine speed: the 2018 seed scenario, three VMs of ebizzy, and how cost grows with VMs and vCPUs.

Prints, each with its target and ratio (measured / target, <= 1 is met):

* the seed scenario (WS2016, 128 vCPUs 64x1x2 on 12 pCPUs, 65 threads x 50 x 16384
  pages, seed-ws2016, kvm-2018) per flush mode: median wall of 5 runs, one core;
  target <= 1.0 s;
* 3 VMs x 64 vCPUs on 64 pCPUs running ebizzy (Linux 4.19 guests, 2018 host),
  per flush mode: wall per simulated second; target <= 10 s;
* a scaling table over ``vms`` 1..4 and vCPUs 16..1024 per VM (ebizzy, pCPUs =
  vCPUs, native flush): events/s and wall per simulated second.

    python bench/engine.py [--repeat 5] [--max-vcpus 1024] [--ebizzy-s 1.0] [--table-s 0.005]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from workers import RunConfig, simulate

SEED_TARGET_S = 1.0
EBIZZY_TARGET_S = 10.0
EXPERIMENT_S = 22.46


def seed_configs() -> dict[str, RunConfig]:
    base = dict(vcpus=128, topology="64x1x2", pcpus=12, threads=65, iterations=50, pages=16384,
                hv_semantics="kvm-2018", profile="seed-ws2016")
    return {
        "native": RunConfig(**base, flush_mode="native", enlightenments=False),
        "hyperv-pv": RunConfig(**base, flush_mode="hyperv-pv", enlightenments=True),
    }


def ebizzy_config(vms: int, vcpus: int, mode: str, duration_s: float) -> RunConfig:
    return RunConfig(guest_os="linux", workload="ebizzy", vms=vms, vcpus=vcpus, pcpus=vcpus, duration_s=duration_s,
                     flush_mode=mode, host_kvm="2018")


def timed(cfg: RunConfig) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = simulate(cfg)
    return time.perf_counter() - t0, r.sim_events


def pin_one_core() -> str:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        return "pinned to one core"
    except (AttributeError, OSError):
        return "not pinned"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-vcpus", type=int, default=1024)
    ap.add_argument("--ebizzy-s", type=float, default=1.0, help="simulated seconds of the 3-VM ebizzy case")
    ap.add_argument("--table-s", type=float, default=0.005, help="simulated seconds per scaling-table cell")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: seed,ebizzy,table")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"engine bench ({pin_one_core()}, load average {os.getloadavg()[0]:.2f})")

    if "seed" not in skip:
        print("\nseed scenario: WS2016 128 vCPUs 64x1x2 on 12 pCPUs, 65 threads x 50 x 16384 pages, seed-ws2016, kvm-2018")
        for mode, cfg in seed_configs().items():
            simulate(cfg)  # warm up imports and caches
            runs = [timed(cfg) for _ in range(args.repeat)]
            wall = statistics.median(w for w, _ in runs)
            events = runs[0][1]
            print(f"  {mode:10s} wall {wall:.3f} s (median of {args.repeat})  target <= {SEED_TARGET_S:.1f} s  "
                  f"ratio {wall / SEED_TARGET_S:.2f}  {EXPERIMENT_S / wall:.0f}x faster than the experiment  "
                  f"events {events}  {events / wall:,.0f} events/s")

    if "ebizzy" not in skip:
        print(f"\n3 VMs x 64 vCPUs on 64 pCPUs, ebizzy -M, {args.ebizzy_s:g} simulated s (Linux 4.19 guests, 2018 host)")
        for mode in ("native", "kvm-pv"):
            wall, events = timed(ebizzy_config(3, 64, mode, args.ebizzy_s))
            per_s = wall / args.ebizzy_s
            print(f"  {mode:10s} wall {wall:.2f} s = {per_s:.2f} s per simulated s  target <= {EBIZZY_TARGET_S:.0f} s  "
                  f"ratio {per_s / EBIZZY_TARGET_S:.2f}  events {events}  {events / wall:,.0f} events/s")

    if "table" not in skip:
        print(f"\nscaling: ebizzy, native flush, pCPUs = vCPUs per VM, {args.table_s:g} simulated s per cell")
        print(f"  {'vms':>3} {'vcpus':>5} {'events':>9} {'events/s':>10} {'wall s per sim s':>17}")
        for vms in (1, 2, 3, 4):
            vcpus = 16
            while vcpus <= args.max_vcpus:
                wall, events = timed(ebizzy_config(vms, vcpus, "native", args.table_s))
                print(f"  {vms:3d} {vcpus:5d} {events:9d} {events / wall:10,.0f} {wall / args.table_s:17.1f}", flush=True)
                vcpus *= 4


if __name__ == "__main__":
    main()
