"""Counters the engine bumps while it runs, and their reduction to a RunResult."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    shootdowns: int = 0
    ipis: int = 0
    vm_exits: int = 0
    hypercalls: int = 0
    hc_flush_space: int = 0
    hc_flush_list: int = 0
    hc_flush_space_ex: int = 0
    hc_flush_list_ex: int = 0
    hc_errors: int = 0
    full_flushes: int = 0
    fine_flushes: int = 0
    deferred_flushes: int = 0
    ple_exits: int = 0
    shootdown_latency_ns: list[int] = field(default_factory=list)


def percentile(sorted_values: list[int], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), computed in pure Python for determinism."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac
