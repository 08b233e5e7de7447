"""A search space over RunConfig fields, and the map from a trial's parameters to its runs' config.

Each parameter is one RunConfig field (or ``overcommit``), as an Optuna
distribution: an int or float range (``step`` or ``log``) or a list of choices.
Topology choices are written as in sweep specs (``flat``, ``smt2``, ``8x2x1``,
``{cores-per-socket: 4}``) and reach Optuna as their labels (``cores-per-socket=4``).
``overcommit`` sets ``pcpus = round(host vCPUs / overcommit)`` (at least 1; the host's vCPUs
are every VM's and the background load): unlike a
sweep, a search may propose any ratio, so it rounds instead of dropping the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sweep._spec import OVERCOMMIT, Impossible, TopologyRule
from workers.config import ConfigError, RunConfig, host_vcpus_of, parse_topology

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

#: Grids larger than this are refused for ``sampler: grid`` (a typo such as a float step of 1e-9).
MAX_GRID = 1_000_000


@dataclass(frozen=True, slots=True)
class IntRange:
    """An integer field from ``low`` to ``high`` inclusive, by ``step`` or log-uniform."""

    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False

    def distribution(self) -> "BaseDistribution":
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid(self) -> list[Any]:
        return list(range(self.low, self.high + 1, self.step))

    def grid_size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def param_of(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        if self.low <= value <= self.high and (value - self.low) % self.step == 0:
            return value
        return None

    def field_value(self, param: Any) -> Any:
        return int(param)

    def probe_values(self) -> list[tuple[str, Any]]:
        return [("low", self.low), ("high", self.high)]

    def some_params(self, n: int) -> list[Any]:
        return list(range(self.low, min(self.high, self.low + (n - 1) * self.step) + 1, self.step))


@dataclass(frozen=True, slots=True)
class FloatRange:
    """A float field (or ``overcommit``) in [low, high], optionally by ``step`` or log-uniform."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def distribution(self) -> "BaseDistribution":
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid(self) -> list[Any]:
        assert self.step is not None
        return [round(self.low + i * self.step, 12) for i in range(self.grid_size())]

    def grid_size(self) -> int:
        if self.step is None:
            return 0
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def param_of(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        value = float(value)
        if not self.low - 1e-12 <= value <= self.high + 1e-12:
            return None
        if self.step is not None:
            k = round((value - self.low) / self.step)
            if abs(self.low + k * self.step - value) > 1e-9:
                return None
            return round(self.low + k * self.step, 12)
        return value

    def field_value(self, param: Any) -> Any:
        return float(param)

    def probe_values(self) -> list[tuple[str, Any]]:
        return [("low", self.low), ("high", self.high)]

    def some_params(self, n: int) -> list[Any]:
        return [self.low, self.high][:n] if self.high != self.low else [self.low]


@dataclass(frozen=True, slots=True)
class Choice:
    """A field taking one of ``values``; Optuna sees ``labels`` (equal to the values except for topology rules)."""

    name: str
    values: tuple[Any, ...]
    labels: tuple[Any, ...]

    def distribution(self) -> "BaseDistribution":
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.labels))

    def grid(self) -> list[Any]:
        return list(self.labels)

    def grid_size(self) -> int:
        return len(self.labels)

    def param_of(self, value: Any) -> Any:
        for v, label in zip(self.values, self.labels):
            if type(v) is type(value) and v == value:
                return label
        return None

    def field_value(self, param: Any) -> Any:
        return self.values[self.labels.index(param)]

    def probe_values(self) -> list[tuple[int, Any]]:
        return list(enumerate(self.values))

    def some_params(self, n: int) -> list[Any]:
        return list(self.labels[:n])


Param = IntRange | FloatRange | Choice


def topology_label(value: str | TopologyRule) -> str:
    """How a topology choice reads in Optuna and the dashboard: ``smt2``, ``8x2x1``, ``cores-per-socket=4``."""
    if isinstance(value, str):
        return value
    parts = zip(("sockets", "cores-per-socket", "threads-per-core"), (value.sockets, value.cores_per_socket, value.threads_per_core))
    return ",".join(f"{k}={v}" for k, v in parts if v is not None)


@dataclass(frozen=True, slots=True)
class Space:
    """The parameters of a search, in spec order, and how they become a RunConfig."""

    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def distributions(self) -> dict[str, "BaseDistribution"]:
        return {p.name: p.distribution() for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for Optuna's GridSampler (each parameter must be discrete)."""
        return {p.name: p.grid() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(p.grid_size() for p in self.params)

    def by_name(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def field_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Trial parameters (Optuna values) -> field values (topology rules, overcommit as a float)."""
        return {p.name: p.field_value(params[p.name]) for p in self.params}

    def params_of(self, config: RunConfig) -> dict[str, Any] | None:
        """The parameters that give ``config`` (up to seed and flush mode), or None if it is outside the space.

        Used to feed sweep results into a study: the caller rebuilds the config
        from these parameters and keeps only exact matches.
        """
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name == OVERCOMMIT:
                value = _overcommit_param(p, config)
            elif p.name == "topology" and isinstance(p, Choice):
                value = next((label for v, label in zip(p.values, p.labels) if _resolves_to(v, config)), None)
            else:
                value = p.param_of(getattr(config, p.name))
            if value is None:
                return None
            out[p.name] = value
        return out


def _overcommit_param(p: Param, config: RunConfig) -> Any:
    if isinstance(p, Choice):
        for v, label in zip(p.values, p.labels):
            if max(1, round(config.host_vcpus / v)) == config.pcpus:
                return label
        return None
    return p.param_of(config.overcommit)


def _resolves_to(value: str | TopologyRule, config: RunConfig) -> bool:
    try:
        resolved = value.resolve(config.vcpus) if isinstance(value, TopologyRule) else "x".join(map(str, parse_topology(value, config.vcpus)))
    except (Impossible, ConfigError):
        return False
    return resolved == config.topology


def build_config(base: Mapping[str, Any], values: Mapping[str, Any], overrides: Mapping[str, Any] = {}) -> RunConfig:
    """base + parameter values (+ overrides such as the flush mode) -> a validated RunConfig.

    Raises:
        Impossible: the combination is not a run (the message names the field).
    """
    fields = {**base, **values, **overrides}
    overcommit = fields.pop(OVERCOMMIT, None)
    vcpus = fields.get("vcpus", RunConfig.__dataclass_fields__["vcpus"].default)
    topology = fields.get("topology")
    if isinstance(topology, TopologyRule):
        fields["topology"] = topology.resolve(vcpus)
    if overcommit is not None:
        if not overcommit > 0:
            raise Impossible(OVERCOMMIT, f"must be > 0, got {overcommit}")
        fields["pcpus"] = max(1, round(host_vcpus_of(fields) / overcommit))
    try:
        return RunConfig.from_dict(fields)
    except ConfigError as exc:
        raise Impossible(exc.field, exc.problem) from None


def varying_fields(space: Space, base: Mapping[str, Any], overrides: Sequence[str]) -> set[str]:
    """RunConfig fields that differ between the runs of a search (the rest are fixed by ``base``)."""
    names = set(space.names)
    out = (names - {OVERCOMMIT}) | {"seed", "flush_mode", *overrides}
    vcpus_vary = "vcpus" in names
    if OVERCOMMIT in names or (OVERCOMMIT in base and vcpus_vary):
        out.add("pcpus")
    if vcpus_vary:
        out.add("topology")
    return out


__all__ = ["Choice", "FloatRange", "IntRange", "MAX_GRID", "Param", "Space", "build_config", "topology_label", "varying_fields"]
