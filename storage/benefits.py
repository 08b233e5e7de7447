"""PV benefit ratios: the one definition the ``paired`` view, the search's objectives and the sweep summary share.

A benefit reads "higher is better" ("x times faster"): for a time or a latency it
is the baseline's value over the PV run's, for a throughput the PV run's over the
baseline's. Kept in ``storage`` because the store's SQL view is built from it and
``sweep`` may import ``storage`` (never the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Benefit:
    """One ratio of a PV run to its paired baseline run."""

    name: str
    metric: str
    label: str
    pv_over_baseline: bool

    def sides(self, *, pv: str = "pv", baseline: str = "base") -> tuple[str, str]:
        """(numerator, denominator) as the caller names the two roles."""
        return (pv, baseline) if self.pv_over_baseline else (baseline, pv)


BENEFITS: tuple[Benefit, ...] = (
    Benefit("benefit_real", "real_s", "real", pv_over_baseline=False),
    Benefit("benefit_sys", "sys_s", "sys", pv_over_baseline=False),
    Benefit("benefit_p99", "lat_p99_us", "p99", pv_over_baseline=False),
    Benefit("benefit_ops", "ops_per_s", "ops/s", pv_over_baseline=True),
)

__all__ = ["BENEFITS", "Benefit"]
