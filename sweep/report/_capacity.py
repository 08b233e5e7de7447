"""Consolidation ratios from measured points: the highest that meets an SLO, with and without a failed host.

A curve is the SLO metric of one VM shape and flush mode at the measured
consolidation ratios (vCPU:pCPU). Two rules keep the answer conservative:

- The highest ratio meeting the SLO is the highest *measured* ratio such that
  it and every lower measured ratio meet it (a noisy pass above a failure does
  not count). A run that crashed meets no SLO.
- One host of an N-host pool failing spreads its VMs over the other N-1, so a
  pool planned at ratio r runs at ``r * N / (N - 1)``. The metric there is
  interpolated linearly between the two measured ratios around it; beyond the
  highest measured ratio it is unknown, and an unknown value is not a pass. So
  the failover-safe ratio is the highest measured r (meeting the SLO itself)
  whose failover ratio is inside the measured range and meets the SLO. To judge
  a ratio r, the spec must measure up to ``r * N / (N - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True, slots=True)
class Point:
    """The SLO metric at one ratio; ``value`` is None when unknown (no reference, no runs) or the run crashed."""

    ratio: float
    value: float | None
    crashed: bool = False

    def meets(self, limit: float) -> bool:
        return not self.crashed and self.value is not None and not math.isnan(self.value) and self.value <= limit


def failover_ratio(ratio: float, pool_hosts: int) -> float:
    """The ratio of the surviving hosts when one of ``pool_hosts`` fails: ``r * N / (N - 1)``."""
    if pool_hosts < 2:
        raise ValueError(f"pool_hosts: a pool needs >= 2 hosts to survive a failure, got {pool_hosts}")
    return ratio * pool_hosts / (pool_hosts - 1)


def highest_ratio(points: Sequence[Point], limit: float) -> float | None:
    """The highest measured ratio at which it and every lower ratio meet ``value <= limit``; None if the lowest fails."""
    best: float | None = None
    for p in sorted(points, key=lambda p: p.ratio):
        if not p.meets(limit):
            break
        best = p.ratio
    return best


def value_at(points: Sequence[Point], ratio: float) -> tuple[float | None, bool]:
    """(metric at ``ratio``, crashed): exact at a measured ratio, else linear between its neighbours.

    Returns (None, False) outside the measured range or next to an unknown value,
    and (None, True) when a neighbour crashed.
    """
    ordered = sorted(points, key=lambda p: p.ratio)
    for p in ordered:
        if math.isclose(p.ratio, ratio, rel_tol=1e-9):
            return (None, True) if p.crashed else (p.value, False)
    for lo, hi in zip(ordered, ordered[1:]):
        if lo.ratio < ratio < hi.ratio:
            if lo.crashed or hi.crashed:
                return None, True
            if lo.value is None or hi.value is None:
                return None, False
            t = (ratio - lo.ratio) / (hi.ratio - lo.ratio)
            return lo.value + t * (hi.value - lo.value), False
    return None, False


def failover_safe_ratio(points: Sequence[Point], limit: float, pool_hosts: int) -> float | None:
    """The highest measured ratio that meets the SLO both as planned and with one host of the pool failed."""
    top = highest_ratio(points, limit)
    best: float | None = None
    for p in sorted(points, key=lambda p: p.ratio):
        if top is None or p.ratio > top:
            break
        value, crashed = value_at(points, failover_ratio(p.ratio, pool_hosts))
        if crashed or value is None or value > limit:
            break
        best = p.ratio
    return best


__all__ = ["Point", "failover_ratio", "failover_safe_ratio", "highest_ratio", "value_at"]
