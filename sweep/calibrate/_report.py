"""The fit report: measured against simulated per point, fitted against base per constant, worst residuals.

Printed after every fit and written next to the profile (``NEW.fit.txt``), so a
profile in the repository always comes with the evidence of how well it fits.
"""

from __future__ import annotations

import math
from typing import Sequence

from sweep.calibrate._fit import FitResult
from sweep.calibrate._objective import Residual
from sweep.tables import format_table


def format_report(result: FitResult, *, max_error: float, worst: int = 3) -> str:
    """The report as text (no trailing newline)."""
    ms, space = result.measurements, result.space
    best_no = f"best trial #{result.best_trial}" if result.best_trial is not None else "no complete trial"
    lines = [
        f"calibration {result.study}: {result.status}; {result.trials} trial(s) ({result.failed_trials} failed), "
        f"{best_no}; sampler {result.sampler}, seed {result.seed}, {result.replicates} replicate(s) per point",
        f"measurements: {ms.source} (sha256 {ms.sha256[:16]}, {len(ms)} points, {ms.figure_count} fitted figures)",
    ]
    if result.message:
        lines.append(result.message)
    if result.best is None:
        lines.append("no fit yet: no trial finished")
        return "\n".join(lines)
    base_err = f"base values {_pct(result.start.error)}; " if result.start is not None else ""
    verdict = "within" if result.error <= max_error else "ABOVE"
    lines += [
        f"error (weighted RMS of relative errors): {_pct(result.error)}  ({base_err}{verdict} --max-error {_pct(max_error)})",
        "",
        "measured vs simulated",
        _residual_table(result.best.residuals),
        "",
        f"fitted constants (base profile {space.base.name})",
    ]
    fitted = result.best.profile
    rows = []
    for b in space.bounds:
        value = fitted.cost(b.name)
        edge = b.at_edge(value)
        note = f"at its {edge} bound: widen --spread or --bound {b.name}=LOW:HIGH" if edge else ""
        rows.append([b.name, _num(b.base), _num(value), f"x{value / b.base:.3f}" if b.base else "-",
                     f"{_num(b.low)} .. {_num(b.high)}", note])
    lines.append(format_table(["constant", "base", "fitted", "ratio", "bounds", "note"], rows))
    lines += ["", f"worst residuals (of {sum(1 for r in result.best.residuals if r.weight > 0)} fitted)"]
    for i, r in enumerate(result.best.worst(worst), start=1):
        lines.append(f"  {i}. row {r.point.row} ({r.point.name}) {r.label}: measured {_num(r.measured)}, "
                     f"simulated {_num(r.simulated)} ({_signed(r.relative)})")
    return "\n".join(lines)


def _residual_table(residuals: Sequence[Residual]) -> str:
    """One line per figure; a weight column only when some weight is not 1 (0 reads "not fitted")."""
    weighted = any(r.weight != 1 for r in residuals)
    header = ["row", "point", "figure", "measured", "simulated", "error", *(["weight"] if weighted else [])]
    rows = []
    for r in residuals:
        row = [str(r.point.row), r.point.name, r.label, _num(r.measured), _num(r.simulated), _signed(r.relative)]
        if weighted:
            row.append(f"{r.weight:g}" if r.weight > 0 else "0 (not fitted)")
        rows.append(row)
    return format_table(header, rows)


def failure_banner(result: FitResult, *, max_error: float, forced: bool, out: str) -> str:
    """The loud message for a fit whose error is above ``--max-error``."""
    what = f"written anyway to {out} (--force)" if forced else f"NOT written to {out} (use --force to write it anyway)"
    return "\n".join([
        "=" * 72,
        f"FIT FAILED: error {_pct(result.error)} is above --max-error {_pct(max_error)}; profile {what}.",
        "Fit more constants, widen the bounds, run more trials (--trials), or check the measurements.",
        "=" * 72,
    ])


def _pct(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2%}"


def _signed(x: float) -> str:
    return f"{x:+.1%}"


def _num(x: float) -> str:
    """5 significant digits, never an exponent for the large constants (a 30 ms quantum is 30000000 ns)."""
    return f"{x:.0f}" if abs(x) >= 1e5 else f"{x:.5g}"


__all__ = ["failure_banner", "format_report"]
