"""Which assumptions the 2018 answer leans on: every unconfirmed constant and modelling choice, moved.

For each constant marked [U] in the profile's YAML (its comment says so) at x0.5 and
x2, and each modelling choice (``CHOICES``) at each of its other values, simulates
the seed scenario (WS2016, 128 vCPUs on 12 pCPUs, 65 threads x 50 x 16384 pages,
native without enlightenments vs hyperv-pv, kvm-2018) and prints how far the six
seed figures and the two benefit ratios (native/PV real and sys) move from the
profile's own values, in percent; then the most sensitive assumptions, ranked by
the largest move of a benefit ratio.

    python bench/sensitivity.py [--profile seed-ws2016] [--iterations 50] [--workers 2] [--top 5]
"""

from __future__ import annotations

import argparse
import re
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from workers import RunConfig, simulate
from workers.profiles import CHOICES, CostProfile, find_profile, load_profile

FIGURES = (("native", "real_s"), ("native", "user_s"), ("native", "sys_s"),
           ("hyperv-pv", "real_s"), ("hyperv-pv", "user_s"), ("hyperv-pv", "sys_s"))
HEADERS = ("n real", "n user", "n sys", "pv real", "pv user", "pv sys", "real x", "sys x")


def unconfirmed_constants(profile_name: str) -> list[str]:
    """Constants whose line in the profile YAML is marked [U] (or whose literature line is)."""
    marked: set[str] = set()
    for path in {find_profile(profile_name), find_profile("literature")}:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s+(\w+):\s*\S+\s*#.*\[U\]", line)
            if m:
                marked.add(m.group(1))
    prof = load_profile(profile_name)
    return [n for n in prof.to_dict() if n in marked and n not in CHOICES]


def seed_configs(iterations: int) -> dict[str, RunConfig]:
    base = dict(vcpus=128, topology="64x1x2", pcpus=12, threads=65, iterations=iterations, pages=16384,
                hv_semantics="kvm-2018")
    return {"native": RunConfig(**base, flush_mode="native", enlightenments=False),
            "hyperv-pv": RunConfig(**base, flush_mode="hyperv-pv", enlightenments=True)}


def figures(job: tuple[CostProfile, int]) -> tuple[float, ...]:
    profile, iterations = job
    runs = {mode: simulate(cfg.replace(profile=profile.name), profile) for mode, cfg in seed_configs(iterations).items()}
    values = [getattr(runs[mode], metric) for mode, metric in FIGURES]
    n, p = runs["native"], runs["hyperv-pv"]
    values += [n.real_s / p.real_s if p.real_s else 0.0, n.sys_s / p.sys_s if p.sys_s else 0.0]
    return tuple(values)


def variants(profile: CostProfile, constants: list[str]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for name in constants:
        value = profile.cost(name)
        out.append((f"{name} x0.5", {name: value * 0.5}))
        out.append((f"{name} x2", {name: value * 2}))
    for name, (allowed, _, _) in CHOICES.items():
        for alt in allowed:
            if alt != profile.choice(name):
                out.append((f"{name}={alt}", {name: alt}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="seed-ws2016")
    ap.add_argument("--iterations", type=int, default=50, help="mmap/munmap rounds per thread (50: the seed)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args()
    base = load_profile(args.profile)
    cases = variants(base, unconfirmed_constants(args.profile))
    jobs = [(base, args.iterations)] + [(base.replace(**change), args.iterations) for _, change in cases]
    with ProcessPoolExecutor(args.workers) as ex:
        results = list(ex.map(figures, jobs))
    ref, rest = results[0], results[1:]
    print(f"seed scenario under {args.profile}, {args.iterations} iterations; values, then % change per assumption")
    width = max(len(label) for label, _ in cases) + 2
    print(" " * width + "".join(f"{h:>9}" for h in HEADERS))
    print(f"{'(profile)':<{width}}" + "".join(f"{v:9.3g}" for v in ref))
    moves = []
    for (label, _), vals in zip(cases, rest):
        pct = [(v / r - 1) * 100 if r else 0.0 for v, r in zip(vals, ref)]
        moves.append((max(abs(pct[6]), abs(pct[7])), label, pct))
        print(f"{label:<{width}}" + "".join(f"{x:+8.1f}%" for x in pct))
    print(f"\nmost sensitive (largest move of a benefit ratio, native/PV real or sys):")
    for move, label, pct in sorted(moves, reverse=True)[: args.top]:
        print(f"  {label:<{width}} real x {pct[6]:+.1f}%  sys x {pct[7]:+.1f}%  (largest figure move "
              f"{max(abs(x) for x in pct[:6]):.1f}%)")


if __name__ == "__main__":
    main()
