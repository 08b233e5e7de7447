"""Counters the engine bumps while it runs (one set per VM), and their reduction to a RunResult."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


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
    directed_yields: int = 0
    preemptions: int = 0
    shootdown_latency_ns: list[int] = field(default_factory=list)


#: The integer counters (everything but the latency samples).
COUNTER_NAMES = tuple(f.name for f in fields(Counters) if f.name != "shootdown_latency_ns")


def percentile(sorted_values: list[int], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), computed in pure Python for determinism."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def mean_int(values: list[int]) -> int:
    """A per-VM mean of a counter, rounded: counters stay integers in stored results."""
    return round(sum(values) / len(values)) if values else 0
