"""The fit error: weighted RMS of relative residuals over every measured figure.

Relative, so a 0.9 s user time and an 86 s sys time count alike; squared, so one
figure far off costs more than several slightly off (the acceptance bands are
per figure). A figure that could not be simulated (the run crashed) makes the
candidate unusable rather than merely bad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from sweep.calibrate._measurements import Measurement
from workers import CostProfile


@dataclass(frozen=True, slots=True)
class Residual:
    """One measured figure of one point against its simulation."""

    point: Measurement
    figure: str
    measured: float
    simulated: float

    @property
    def relative(self) -> float:
        """(simulated - measured) / measured; positive when the simulation is slower (or faster, for ops/s)."""
        return (self.simulated - self.measured) / self.measured

    @property
    def weight(self) -> float:
        return self.point.weight


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
        return sorted(self.residuals, key=lambda r: -abs(r.relative))[:n]


def rms_relative_error(residuals: Sequence[Residual]) -> float:
    """sqrt(sum w r^2 / sum w); 0 for no residuals."""
    total = sum(r.weight for r in residuals)
    if not total:
        return 0.0
    return math.sqrt(sum(r.weight * r.relative**2 for r in residuals) / total)


def evaluate(profile: CostProfile, points: Sequence[Measurement], simulated: Sequence[Mapping[str, float] | None]) -> Evaluation:
    """Compare ``simulated[i]`` (figure -> value, None if the run crashed) with ``points[i]``."""
    residuals: list[Residual] = []
    crashed: list[str] = []
    for point, sim in zip(points, simulated, strict=True):
        if sim is None:
            crashed.append(point.name)
            continue
        residuals += [Residual(point, f, m, float(sim[f])) for f, m in point.figures.items()]
    return Evaluation(profile, tuple(residuals), tuple(crashed))


__all__ = ["Evaluation", "Residual", "evaluate", "rms_relative_error"]
