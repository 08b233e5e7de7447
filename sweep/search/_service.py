"""Searches as a service: open or resume the study, recover what a dead driver left, run the trials.

The search is a sweep record of kind ``search`` named after the study, so its
runs are linked to it like a sweep's (``flushsweep status`` and ``cancel`` see
it) and land in the same Parquet results and runs table, shared by run_id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from sweep._executor import Executor
from sweep._expand import default_run_key
from sweep._progress import Progress
from sweep._service import compact_finished, stop_on_signals
from sweep._spec import Impossible
from sweep.search._cache import RunCache
from sweep.search._driver import SearchController, SearchOptions, SearchReport
from sweep.search._optuna import BaseSearch, OptunaSearch
from sweep.search._seed import SeedReport, check_seed_source, seed_from_sweep
from sweep.search._spec import SearchSpec
from sweep.search._trial import Evaluation, RunKey, plan_trial


class NameTaken(ValueError):
    """The search's name is already used by a sweep of another kind."""


@dataclass(frozen=True, slots=True)
class SearchSession:
    """What ``run_search`` did: the driver's report, what was recovered and seeded, and the strategy."""

    report: SearchReport
    recovered_at_start: int
    requeued_runs: int
    prefetched: int
    seed: SeedReport | None
    search: BaseSearch


def check_name(store: Any, spec: SearchSpec) -> None:
    """Refuse a name a sweep (not a search) already has, before anything is created under it.

    Raises:
        NameTaken: with the kind of the record that has the name.
    """
    record = store.find_sweep(spec.name)
    if record is not None and record.kind != "search":
        raise NameTaken(f"{spec.name!r} is already the name of a {record.kind}; give the search another name")


def begin_search(store: Any, spec: SearchSpec) -> int:
    """Create (or reopen) the search's sweep record; returns runs a dead driver left running (now pending).

    Raises:
        NameTaken: a sweep (not a search) already has this name.
    """
    check_name(store, spec)
    store.begin_sweep(spec.name, spec.text, kind="search")
    return store.requeue(spec.name)


def run_search(
    store: Any,
    spec: SearchSpec,
    executor: Executor | Callable[[], Executor],
    *,
    search: BaseSearch | None = None,
    options: SearchOptions = SearchOptions(),
    heartbeat_s: int = 10,
    seed_from: str | None = None,
    progress: Progress | None = None,
    run_key: RunKey | None = None,
    until: Callable[[Evaluation], bool] | None = None,
) -> SearchSession:
    """Run (or resume) the search ``spec`` until its trial budget is spent.

    Args:
        executor: an Executor, or a factory called only if some run must be
            simulated (a search answered entirely from the store starts no Ray).
        search: the strategy (default: ``OptunaSearch`` on the store's database).
        heartbeat_s: heartbeat of in-flight trials; a trial silent for three
            times this long is taken to belong to a dead driver and re-queued.
        seed_from: a sweep whose finished results are queued as trials first.
        until: stop early once a trial's evaluation satisfies this (see SearchController).

    Returns:
        The session: its report (status ``done``, ``interrupted`` or ``cancelled``) and the strategy.
        A search that is done has its result files compacted, as a finished sweep has.

    Raises:
        NameTaken, SeedError, SpecError (the stored study has other objectives), StoreError.

    Example:
        >>> with open_store("flushsweep-data") as store:                       # doctest: +SKIP
        ...     session = run_search(store, load_search_spec("configs/search/quickstart.yaml"),
        ...                          InProcessExecutor())
        ...     session.report.told
    """
    key = run_key or default_run_key()
    if spec.sampler.name == "grid":  # past its last point a grid sampler only repeats itself
        spec = dataclasses.replace(spec, trials=min(spec.trials, spec.space.grid_size()))
    if seed_from is not None:
        check_seed_source(store, seed_from)
    requeued = begin_search(store, spec)
    strategy = search or OptunaSearch(spec, url=store.db_url, heartbeat_s=heartbeat_s)
    recovered = strategy.recover()
    relink(store, spec, strategy, key)
    cache = RunCache()
    prefetched = cache.prefetch(store, spec, _example(spec, key))
    seeded = seed_from_sweep(store, spec, strategy, cache, key, seed_from) if seed_from else None
    controller = SearchController(
        store=store, spec=spec, search=strategy, executor=executor, cache=cache, run_key=key, options=options,
        progress=progress, heartbeat_s=heartbeat_s, until=until,
    )
    with stop_on_signals(controller):
        report = controller.run()
    if report.status == "done":
        compact_finished(store, spec.name)
    return SearchSession(report, recovered, requeued, prefetched, seeded, strategy)


def relink(store: Any, spec: SearchSpec, search: BaseSearch, run_key: RunKey) -> int:
    """Link to the search the runs its finished trials used that are not linked yet; returns how many.

    The driver links reused runs in batches, so a killed driver may leave some
    unlinked (the runs themselves are stored). Each trial missing some is planned
    again; only runs whose run_id the trial recorded are linked (after a model
    change the same parameters plan other runs, which the trial never used).
    """
    from storage import NewRun

    linked = {r.run_id for r in store.runs(spec.name)}
    missing: dict[str, NewRun] = {}
    for params, run_ids in search.finished_runs():
        if linked.issuperset(run_ids):
            continue
        try:
            plan = plan_trial(spec, params, run_key)
        except Impossible:
            continue
        recorded = set(run_ids) - linked
        missing.update((r.run_id, NewRun(r.run_id, r.config.to_dict(), r.baseline_run_id)) for r in plan.runs if r.run_id in recorded)
    if missing:
        store.add_runs(spec.name, list(missing.values()))
    return len(missing)


def _example(spec: SearchSpec, run_key: RunKey) -> Any:
    """A PV config of the search (its fixed fields select the stored rows worth loading), or None."""
    import itertools

    choices = [p.some_params(4) for p in spec.space.params]
    for values in itertools.islice(itertools.product(*choices), 256):
        try:
            return plan_trial(spec, dict(zip(spec.space.names, values)), run_key).config
        except Impossible:
            continue
    return None


__all__ = ["NameTaken", "SearchSession", "begin_search", "check_name", "relink", "run_search"]
