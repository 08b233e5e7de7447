"""``--seed-from-sweep``: feed a sweep's finished results into a study before it samples anything.

A sweep's PV run becomes a queued trial when its configuration lies in the
search space (the parameters that rebuild exactly that run exist) and every run
the trial needs (PV and baseline, every replicate seed) is already stored. The
trial is then asked first and scored from the store without simulating; it is
marked ``seeded_from`` and does not count toward the trial budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep._spec import Impossible
from sweep.search._cache import RunCache
from sweep.search._optuna import BaseSearch
from sweep.search._spec import SearchSpec
from sweep.search._trial import RunKey, plan_trial
from workers.config import ConfigError, RunConfig, field_names


class SeedError(ValueError):
    """The sweep to seed from does not exist or holds nothing usable; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SeedReport:
    sweep: str
    queued: int  # new trials queued
    already: int  # configurations the study had already
    outside: int  # PV runs of the sweep outside the space (or with another base)
    incomplete: int  # in the space, but some run of the trial is not stored


def check_seed_source(store: Any, sweep: str) -> None:
    """Raises SeedError (naming the known sweeps) when there is no sweep ``sweep`` to seed from."""
    if store.find_sweep(sweep) is None:
        known = ", ".join(s.name for s in store.sweeps() if s.kind != "search")[:300] or "none yet"
        raise SeedError(f"no sweep named {sweep!r}; known sweeps: {known}")


def seed_from_sweep(store: Any, spec: SearchSpec, search: BaseSearch, cache: RunCache, run_key: RunKey, sweep: str) -> SeedReport:
    """Queue the configurations of ``sweep`` that this search can score from stored runs.

    Raises:
        SeedError: no sweep of that name.
    """
    check_seed_source(store, sweep)
    columns = set(store.columns()) if hasattr(store, "columns") else set()
    if "flush_mode" not in columns:
        return SeedReport(sweep, 0, 0, 0, 0)
    table = store.results({"flush_mode": spec.pv_mode}, sweep=sweep)
    names = [f for f in field_names() if f in table.column_names]
    candidates: dict[tuple, dict[str, Any]] = {}
    outside = incomplete = 0
    for row in table.select(names).to_pylist():
        try:
            config = RunConfig.from_dict(row)
        except ConfigError:  # a row from an older RunConfig vocabulary
            outside += 1
            continue
        params = spec.space.params_of(config)
        if params is None:
            outside += 1
            continue
        key = tuple(sorted(params.items(), key=lambda kv: kv[0]))
        if key in candidates:
            continue  # another replicate of a configuration already taken
        try:
            plan = plan_trial(spec, params, run_key)
        except Impossible:
            outside += 1
            continue
        if run_key(config) not in plan.run_map()["pv"]:  # same parameters, other fixed fields (base differs)
            outside += 1
            continue
        if not all(rid in cache for rid in plan.run_ids):
            incomplete += 1
            continue
        candidates[key] = params
    queued = search.enqueue(list(candidates.values()), seeded_from=sweep)
    return SeedReport(sweep, queued, len(candidates) - queued, outside, incomplete)


__all__ = ["SeedError", "SeedReport", "check_seed_source", "seed_from_sweep"]
