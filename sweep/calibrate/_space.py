"""What a fit searches: the named cost constants, each within bounds on a log scale.

Cost constants span seven orders of magnitude (a cmpxchg to a scheduler
quantum) and act multiplicatively, so each is searched on a log scale between
``base / spread`` and ``base * spread`` unless bounds are given. A candidate is
the base profile with the fitted constants replaced, rounded to
``SIGNIFICANT_DIGITS`` (base values stay as they are) so the profile written at
the end is exactly the candidate whose runs are in the store.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from sweep.calibrate._measurements import CalibrationError
from workers import CostProfile, cost_names

#: Fitted constants keep this many significant digits (finer than any fit can resolve).
SIGNIFICANT_DIGITS = 5
#: Default search range: base / SPREAD .. base * SPREAD.
DEFAULT_SPREAD = 4.0


@dataclass(frozen=True, slots=True)
class Bound:
    """One fitted constant: its base value and its search range (low < high, both > 0)."""

    name: str
    base: float
    low: float
    high: float

    def at_edge(self, value: float, tolerance: float = 0.02) -> str:
        """``"lower"``/``"upper"`` when ``value`` is within ``tolerance`` (relative) of a bound, else ``""``."""
        if value <= self.low * (1 + tolerance):
            return "lower"
        if value >= self.high * (1 - tolerance):
            return "upper"
        return ""


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The base profile and the bounds of the constants a fit may change."""

    base: CostProfile
    bounds: tuple[Bound, ...]

    @classmethod
    def build(
        cls,
        base: CostProfile,
        names: Sequence[str],
        *,
        spread: float = DEFAULT_SPREAD,
        overrides: Mapping[str, tuple[float, float]] | None = None,
    ) -> "SearchSpace":
        """Bounds for ``names`` from the base values, or from ``overrides`` (name -> (low, high)).

        Raises:
            CalibrationError: unknown or repeated name, a zero base value without an override, bad bounds.
        """
        known = cost_names()
        overrides = dict(overrides or {})
        if not names:
            raise CalibrationError("--fit: name at least one cost constant to fit, e.g. --fit fault_ns,hypercall_ns")
        if not spread > 1:
            raise CalibrationError(f"--spread: must be > 1 (the range is base/spread .. base*spread), got {spread}")
        for name in [*names, *overrides]:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise CalibrationError(f"--fit: {name!r} is not a cost constant; {hint}the constants "
                                       f"(ns in profile {base.name!r}): {known_constants(base)}")
        if len(set(names)) != len(names):
            twice = next(n for n in names if list(names).count(n) > 1)
            raise CalibrationError(f"--fit: {twice!r} is named twice; name each constant once")
        stray = sorted(set(overrides) - set(names))
        if stray:
            raise CalibrationError(f"--bound: {stray[0]!r} is not fitted; add it to --fit or drop its bound")
        bounds = []
        for name in names:
            value = base.cost(name)
            if name in overrides:
                low, high = overrides[name]
                if not 0 < low < high:
                    raise CalibrationError(f"--bound {name}: need 0 < LOW < HIGH, got {low}:{high}")
            elif value <= 0:
                raise CalibrationError(f"--fit {name}: it is 0 in profile {base.name!r}, so it has no log-scale range; give --bound {name}=LOW:HIGH")
            else:
                low, high = value / spread, value * spread
            bounds.append(Bound(name, value, float(low), float(high)))
        return cls(base, tuple(bounds))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bounds)

    def distributions(self) -> dict:
        """Optuna distributions, one log-scale float per constant."""
        from optuna.distributions import FloatDistribution

        return {b.name: FloatDistribution(b.low, b.high, log=True) for b in self.bounds}

    def start(self) -> dict[str, float]:
        """The base values, clamped into the bounds: the fit's first trial."""
        return {b.name: min(max(b.base, b.low), b.high) for b in self.bounds}

    def candidate(self, params: Mapping[str, float]) -> CostProfile:
        """The base profile with ``params`` (rounded) in place; named after the base, tagged with its digest.

        A candidate equal to the base keeps the base's name, so the base's runs are
        the same runs a sweep under that profile stores (computed once).
        """
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"no value for fitted constant {missing[0]!r}")
        # a base value stays exact (however many digits it has), so the start trial is the base profile itself
        costs = {n: v if v == self.base.cost(n) else round_significant(v) for n, v in ((n, float(params[n])) for n in self.names)}
        profile = self.base.replace(**costs)
        name = self.base.name if profile.digest() == self.base.digest() else f"{self.base.name}~{profile.digest()[:12]}"
        return _renamed(profile, name)

    def key(self) -> str:
        """A hash of what the fit optimises besides the measurements: base constants, names, bounds."""
        data = {"base": self.base.digest(), "bounds": [[b.name, b.low, b.high] for b in self.bounds]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def known_constants(profile: CostProfile) -> str:
    """Every cost constant and its value in ``profile``, on one line (for an error message)."""
    return ", ".join(f"{n} {profile.cost(n):.10g}" for n in cost_names())


def constants_help(profile: CostProfile, comments: Mapping[str, str]) -> str:
    """Every cost constant with its value in ``profile`` and the profile's note on where the value comes from.

    Read from the profile and ``workers.cost_names()`` when help is shown, so the
    list is whatever the engine prices today.
    """
    width = max(len(n) for n in cost_names())
    lines = [f"cost constants for --fit and --bound (value in profile {profile.name!r}, ns; its source):"]
    for n in cost_names():
        note = comments.get(n, "")
        lines.append(f"  {n.ljust(width)}  {profile.cost(n):>12.10g}  {note}".rstrip())
    return "\n".join(lines) + "\n"


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0 stays 0)."""
    if value == 0:
        return 0.0
    return float(f"{value:.{digits}g}")


def parse_bound(text: str) -> tuple[str, tuple[float, float]]:
    """``NAME=LOW:HIGH`` -> (name, (low, high)).

    Raises:
        CalibrationError: not of that shape, or not numbers.
    """
    name, sep, rng = text.partition("=")
    low, sep2, high = rng.partition(":")
    if not sep or not sep2 or not name.strip():
        raise CalibrationError(f"--bound {text!r}: expected NAME=LOW:HIGH, e.g. --bound fault_ns=500:5000")
    try:
        return name.strip(), (float(low), float(high))
    except ValueError:
        raise CalibrationError(f"--bound {text!r}: LOW and HIGH must be numbers, e.g. --bound fault_ns=500:5000") from None


def _renamed(profile: CostProfile, name: str) -> CostProfile:
    from workers import profile_from_mapping

    return profile_from_mapping({**profile.to_dict(), "name": name}, source=name)


__all__ = ["DEFAULT_SPREAD", "SIGNIFICANT_DIGITS", "Bound", "SearchSpace", "constants_help", "known_constants", "parse_bound", "round_significant"]
