"""The fit error: weighted RMS of relative residuals over every measured figure.

Relative, so a 0.9 s user time and an 86 s sys time count alike; squared, so one
figure far off costs more than several slightly off (the acceptance bands are
per figure). A row measured ``relative_to`` another is compared as a ratio
(simulated this/reference against measured this/reference), which is how a
criterion like "native and PV within 5% of each other" enters the fit. A figure
of weight 0 is reported but does not count. A point whose simulation crashed
makes the candidate unusable rather than merely bad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from sweep.calibrate._measurements import Measurement
from workers import CostProfile


@dataclass(frozen=True, slots=True)
class Residual:
    """One measured figure of one point against its simulation (both ratios when ``reference`` is set)."""

    point: Measurement
    figure: str
    measured: float
    simulated: float
    reference: Measurement | None = None

    @property
    def relative(self) -> float:
        """(simulated - measured) / measured; positive when the simulation is slower (or faster, for ops/s)."""
        return (self.simulated - self.measured) / self.measured

    @property
    def weight(self) -> float:
        return self.point.weight_of(self.figure)

    @property
    def label(self) -> str:
        """The figure, or ``figure / row N`` for a ratio."""
        return self.figure if self.reference is None else f"{self.figure} / row {self.reference.row}"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A profile's figures at every measured point, and its error."""

    profile: CostProfile
    residuals: tuple[Residual, ...]
    crashed: tuple[str, ...] = ()  # point names whose simulation crashed

    @property
    def error(self) -> float:
        """Weighted RMS relative error (inf when a point crashed)."""
        return rms_relative_error(self.residuals) if not self.crashed else math.inf

    def worst(self, n: int = 3) -> list[Residual]:
        """The ``n`` fitted residuals furthest from their measurement."""
        return sorted((r for r in self.residuals if r.weight > 0), key=lambda r: -abs(r.relative))[:n]


def rms_relative_error(residuals: Sequence[Residual]) -> float:
    """sqrt(sum w r^2 / sum w); 0 when nothing has weight."""
    total = sum(r.weight for r in residuals)
    if not total:
        return 0.0
    return math.sqrt(sum(r.weight * r.relative**2 for r in residuals) / total)


def evaluate(profile: CostProfile, points: Sequence[Measurement], simulated: Sequence[Mapping[str, float] | None]) -> Evaluation:
    """Compare ``simulated[i]`` (figure -> value, None if the run crashed) with ``points[i]``.

    Raises:
        KeyError: a ``relative_to`` names no point (parse_measurements rules that out).
    """
    by_label = {p.label: i for i, p in enumerate(points) if p.label}
    residuals: list[Residual] = []
    crashed: list[str] = []
    for point, sim in zip(points, simulated, strict=True):
        ref = points[by_label[point.relative_to]] if point.relative_to else None
        ref_sim = simulated[by_label[point.relative_to]] if point.relative_to else None
        if sim is None or (ref is not None and ref_sim is None):
            crashed.append(point.name)
            continue
        for f, m in point.figures.items():
            if ref is None:
                residuals.append(Residual(point, f, m, float(sim[f])))
            else:
                assert ref_sim is not None
                residuals.append(Residual(point, f, m / ref.figures[f], float(sim[f]) / float(ref_sim[f]), ref))
    return Evaluation(profile, tuple(residuals), tuple(crashed))


__all__ = ["Evaluation", "Residual", "evaluate", "rms_relative_error"]
