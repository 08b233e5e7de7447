"""Expanding a SweepSpec into runs: the axes' product, filtered, paired, deduplicated.

A run's identity is ``workers.run_key`` (the canonical config plus the cost
profile's digest), so two combinations that mean the same VM are one run, and a
run another sweep already computed is not computed again.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sweep._safe_expr import ExprError
from sweep._yaml import SpecError
from sweep._spec import Axis, Impossible, SweepSpec, derived_names, resolve_assignment
from workers.config import ConfigError, RunConfig

#: How the run_id of a config is computed (``workers.run_key`` unless a caller injects another).
RunKey = Callable[[RunConfig], str]


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A run a sweep will ask for; ``baseline_run_id`` is the paired baseline's run_id, if any."""

    run_id: str
    config: RunConfig
    baseline_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Expansion:
    """The runs of a spec and what was dropped on the way (all counts are combinations x replicates)."""

    runs: tuple[PlannedRun, ...]
    combinations: int
    impossible: int
    filtered: int
    duplicates: int
    baselines_added: int
    impossible_reasons: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """One line: how many runs and why the others were dropped."""
        parts = [f"{len(self.runs)} runs from {self.combinations} combinations"]
        if self.impossible:
            top = ", ".join(f"{r} ({n})" for r, n in self.impossible_reasons.most_common(2))
            parts.append(f"{self.impossible} impossible dropped [{top}]")
        if self.filtered:
            parts.append(f"{self.filtered} filtered by where")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates merged")
        if self.baselines_added:
            parts.append(f"{self.baselines_added} baselines added")
        return "; ".join(parts)


def default_run_key() -> RunKey:
    """``workers.run_key`` with each cost profile loaded once (expansion hashes thousands of configs)."""
    import workers
    from workers.profiles import load_profile

    profiles: dict[str, Any] = {}

    def key(config: RunConfig) -> str:
        if config.profile not in profiles:
            profiles[config.profile] = load_profile(config.profile)
        return workers.run_key(config, profiles[config.profile])

    return key


def expand(spec: SweepSpec, *, run_key: RunKey | None = None) -> Expansion:
    """All runs of ``spec``, baselines first-come, duplicates merged.

    Impossible combinations (a topology that does not divide vcpus, an
    overcommit that gives no whole pCPU count, a field combination RunConfig
    refuses) are dropped and counted. An axis value that is impossible in every
    combination is a mistake in the spec, not a drop.

    Raises:
        SpecError: a value that never makes a valid run, an unknown profile, or no runs at all.
    """
    key = run_key or default_run_key()
    runs: dict[str, PlannedRun] = {}
    asked: set[str] = set()
    combos = impossible = filtered = duplicates = 0
    reasons: Counter[str] = Counter()
    survived: Counter[tuple[int, int]] = Counter()
    first_reason: dict[tuple[int, int], Impossible] = {}
    first_impossible: Impossible | None = None

    def run_id_of(config: RunConfig) -> str:
        try:
            return key(config)
        except ConfigError as exc:  # an unknown or broken profile: report it against the spec
            raise spec.error(_field_path(spec, exc.field), exc.problem) from None

    for picks in _product(spec.axes):
        combos += 1
        values = dict(spec.base)
        for axis, (_, value) in zip(spec.axes, picks):
            values.update(zip(axis.fields, value))
        coords = [(i, j) for i, (j, _) in enumerate(picks)]
        baseline: RunConfig | None = None
        try:
            config = resolve_assignment(values)
            if spec.compare is not None:
                baseline = spec.compare.baseline_of(config)
                if baseline is None:
                    config = spec.compare.as_baseline(config)
        except (Impossible, ConfigError) as exc:
            # ConfigError: the baseline (this config plus the overrides) is what RunConfig refuses
            reason = exc if isinstance(exc, Impossible) else Impossible(exc.field, f"{exc.problem} (in the compare baseline)")
            impossible += 1
            reasons[reason.field] += 1
            first_impossible = first_impossible or reason
            for c in coords:
                first_reason.setdefault(c, reason)
            continue
        for c in coords:
            survived[c] += 1
        if spec.where and not _keep(spec, config):
            filtered += 1
            continue
        baseline_id = None
        if baseline is not None:
            baseline_id = run_id_of(baseline)
            runs.setdefault(baseline_id, PlannedRun(baseline_id, baseline))
        run_id = run_id_of(config)
        if run_id in asked:
            duplicates += 1
            continue
        asked.add(run_id)
        runs.setdefault(run_id, PlannedRun(run_id, config, baseline_id))

    _check_never_valid(spec, survived, first_reason)
    if not runs:
        if filtered:
            raise spec.error(("where",), "no runs: every combination is filtered out by where")
        assert first_impossible is not None  # the product has at least one combination
        raise spec.error(_field_path(spec, first_impossible.field), f"no valid run: {first_impossible.problem}")
    return Expansion(tuple(runs.values()), combos, impossible, filtered, duplicates, len(set(runs) - asked), reasons)


def _product(axes: tuple[Axis, ...]) -> Iterator[tuple[tuple[int, tuple[Any, ...]], ...]]:
    return itertools.product(*(list(enumerate(a.values)) for a in axes))


def _keep(spec: SweepSpec, config: RunConfig) -> bool:
    names = derived_names(config)
    for i, (clause, line) in enumerate(zip(spec.where, spec.where_lines)):
        try:
            if not clause.evaluate(names):
                return False
        except ExprError as exc:  # e.g. comparing text with a number: the evaluator says what to write instead
            field = f"where[{i}]" if ("where", i) in spec.lines else "where"
            raise SpecError(spec.source, line, field, f"{clause.text!r} cannot be evaluated: {exc}") from None
    return True


def _field_path(spec: SweepSpec, name: str) -> tuple[str, ...]:
    for axis in spec.axes:
        if name in axis.fields:
            return axis.path  # type: ignore[return-value]
    return ("base", name) if name in spec.base else ("base",)


def _check_never_valid(spec: SweepSpec, survived: Counter[tuple[int, int]], first_reason: dict[tuple[int, int], Impossible]) -> None:
    """An axis value that no combination can use is an error, blamed on the axis the reason names."""
    never = [c for c in first_reason if survived[c] == 0 and spec.axes[c[0]].path != ("replicates",)]
    if not never:
        return
    never.sort(key=lambda c: (first_reason[c].field not in spec.axes[c[0]].fields, c))
    i, j = never[0]
    reason = first_reason[(i, j)]
    swept = {f for a in spec.axes for f in a.fields}
    if not any(survived.values()) and reason.field not in swept:  # e.g. base.threads: 0
        raise spec.error(_field_path(spec, reason.field), f"no valid run: {reason.problem}")
    axis, value = spec.axes[i], spec.axes[i].values[j]
    shown = ", ".join(_show(v) for v in value)
    raise spec.error(axis.value_paths[j], f"{shown} never makes a valid run: {reason}")


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
