"""Judging one rung of a VMs-per-host ladder against the SLO, from what its runs measured.

A rung is ``vms`` identical VMs on one host, over the spec's replicates. Its
value for each SLO term is the ``worst`` replicate (lowest throughput, longest
run, highest p99) or their ``mean``. Throughput and run time are judged against
one VM alone on the same host (the ``Alone`` reference: the best flush mode's
``vms: 1`` rung), so every flush mode is held to the same floor.

A crash fails the rung whatever the terms: nothing was served. An unknown value
(no reference because one VM alone crashed in every mode, or a metric the runs
lack) is not a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweep.report._spec import Slo

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True, slots=True)
class Rung:
    """What the runs of one rung measured, aggregated over replicates (None: not measured or crashed)."""

    vms: int
    runs: int
    crashed: bool = False
    crash_reason: str = ""
    ops_min: float | None = None  # the slowest VM's ops/s
    real_s: float | None = None
    lat_p99_us: float | None = None

    @classmethod
    def of(cls, vms: int, runs: "pandas.DataFrame", aggregate: str) -> "Rung":
        """The rung measured by ``runs`` (result rows of one ladder at one vms count)."""
        bad = runs[runs["outcome"] != "ok"]
        if len(bad):
            reason = str(bad["crash_reason"].iloc[0] or "crash") if "crash_reason" in bad.columns else "crash"
            return cls(vms, len(runs), crashed=True, crash_reason=reason)
        worst = aggregate == "worst"

        def pick(column: str, low_is_worse: bool) -> float | None:
            if column not in runs.columns:
                return None
            values = runs[column].astype(float)
            value = (values.min() if low_is_worse else values.max()) if worst else values.mean()
            return None if math.isnan(value) else float(value)

        return cls(vms, len(runs), ops_min=pick("ops_per_s_min", True), real_s=pick("real_s", False),
                   lat_p99_us=pick("lat_p99_us", False))


@dataclass(frozen=True, slots=True)
class Alone:
    """One VM alone on the host: the best ``vms: 1`` rung over the flush modes, and which mode that was."""

    ops_per_s: float
    real_s: float
    flush_mode: str

    @classmethod
    def best(cls, by_mode: dict[str, Rung]) -> "Alone | None":
        """The reference from each flush mode's ``vms: 1`` rung; None if every one crashed or lacks a value."""
        usable = [(mode, r) for mode, r in sorted(by_mode.items())
                  if not r.crashed and r.ops_min is not None and r.ops_min > 0 and r.real_s is not None and r.real_s > 0]
        if not usable:
            return None
        mode, rung = max(usable, key=lambda mr: (mr[1].ops_min, -mr[1].real_s))  # type: ignore[operator]
        return cls(float(rung.ops_min), float(rung.real_s), mode)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judged rung: whether it meets the SLO, and each term that failed, as a phrase."""

    rung: Rung
    passed: bool
    failures: tuple[str, ...]
    throughput: float | None  # the slowest VM's ops/s over one VM alone's
    stretch: float | None  # real_s over one VM alone's

    @property
    def vms(self) -> int:
        return self.rung.vms


def judge(slo: Slo, rung: Rung, alone: Alone | None, mode: str | None = None) -> Verdict:
    """Judge ``rung`` (of flush mode ``mode``) against every term of ``slo``.

    A failure against one VM alone under another flush mode names that mode.

    Example:
        >>> slo = Slo(throughput=0.8, lat_p99_us=100)
        >>> v = judge(slo, Rung(3, 1, ops_min=70.0, real_s=1.2, lat_p99_us=120.0), Alone(100.0, 1.0, "native"))
        >>> v.passed, v.failures
        (False, ('slowest VM at 70% of one VM alone (SLO 80%)', 'shootdown p99 120 us (SLO 100 us)'))
    """
    throughput = stretch = None
    if alone is not None and rung.ops_min is not None:
        throughput = rung.ops_min / alone.ops_per_s
    if alone is not None and rung.real_s is not None:
        stretch = rung.real_s / alone.real_s
    if rung.crashed:
        return Verdict(rung, False, (f"crashed ({rung.crash_reason})",), None, None)
    failures: list[str] = []
    under = f" under {alone.flush_mode}" if alone is not None and mode is not None and alone.flush_mode != mode else ""
    if slo.throughput is not None:
        if throughput is None:
            failures.append(_unknown("throughput", alone))
        elif throughput < slo.throughput:
            failures.append(f"slowest VM at {throughput:.0%} of one VM alone{under} (SLO {slo.throughput:.0%})")
    if slo.real_s_stretch is not None:
        if stretch is None:
            failures.append(_unknown("real_s", alone))
        elif stretch > slo.real_s_stretch:
            failures.append(f"real_s {stretch:.2f}x one VM alone{under} (SLO {slo.real_s_stretch:g}x)")
    if slo.lat_p99_us is not None:
        if rung.lat_p99_us is None:
            failures.append("shootdown p99 unknown")
        elif rung.lat_p99_us > slo.lat_p99_us:
            failures.append(f"shootdown p99 {rung.lat_p99_us:.4g} us (SLO {slo.lat_p99_us:g} us)")
    return Verdict(rung, not failures, tuple(failures), throughput, stretch)


def _unknown(metric: str, alone: Alone | None) -> str:
    if alone is None:
        return f"{metric} unknown: one VM alone crashed in every flush mode"
    return f"{metric} unknown: the runs lack it"


__all__ = ["Alone", "Rung", "Verdict", "judge"]
