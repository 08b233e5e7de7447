"""`flushsweep search SPEC`: find where PV TLB flush pays off most, with Optuna.

Each trial runs a configuration under the baseline flush mode and the PV mode
(same seeds) and scores it from the two runs; every run is stored like a sweep
run, so a configuration evaluated before, by a sweep or a search, is read back
instead of simulated. The study lives in the store's database
(`optuna-dashboard <db-url>` shows it). Starting the same spec again resumes
the study by name: trials a killed driver left running are re-queued.
SPEC may also be the name of a search in the store (it resumes with its stored spec).

Exit status: 0 when the trial budget is spent, 130 when interrupted (run the
same command to resume), 1 when cancelled or stopped by --fail-fast, 2 for bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from sweep._cliutil import add_execution_arguments, add_store_arguments, open_store, positive_int
from sweep._yaml import SpecError
from sweep.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search for the configurations where PV flush pays off most (Optuna)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="search spec, e.g. configs/search/quickstart.yaml (or a stored search's name)")
    p.add_argument("--trials", type=positive_int, default=None, help="trials to evaluate in total (default: the spec's)")
    p.add_argument("--parallel", type=positive_int, default=None, help="trials in flight (default: the spec's)")
    p.add_argument("--seed-from-sweep", metavar="SWEEP", default=None, help="first feed this sweep's finished results into the study")
    p.add_argument("--plots", metavar="DIR", type=Path, default=None, help="write history, importance, slice and contour figures (PNG) here")
    p.add_argument("--top", type=positive_int, default=5, help="best configurations shown (default 5)")
    p.add_argument("--local", action="store_true", help="simulate in this process instead of on Ray")
    p.add_argument("--heartbeat", type=positive_int, default=10, metavar="S",
                   help="seconds between heartbeats of in-flight trials; 3x this without one marks a dead driver's trial (default 10)")
    add_execution_arguments(p)
    add_store_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import optuna

    from sweep.search import NameTaken, OptunaSearch, SeedError, check_name, check_seed_source, make_sampler, run_search, summary_text, write_plots
    from sweep.search._driver import SearchOptions

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the summary says what matters; not a line per trial
    spec_file = Path(args.spec)
    if spec_file.exists() or spec_file.suffix in (".yaml", ".yml"):
        spec = _load(spec_file)
    else:
        spec = _stored(args, args.spec)
    spec = _overridden(spec, args)
    sampler = _checked(lambda: make_sampler(spec))  # bad sampler options: refused before anything is stored
    if spec.sampler.name == "grid" and spec.trials > spec.space.grid_size():
        print(f"{spec.name}: the grid has {spec.space.grid_size()} points; trials capped to that", file=sys.stderr)
        spec = dataclasses.replace(spec, trials=spec.space.grid_size())
    with open_store(args) as store:
        try:
            check_name(store, spec)  # before the study is created under that name
            if args.seed_from_sweep is not None:
                check_seed_source(store, args.seed_from_sweep)
            search = _checked(lambda: OptunaSearch(spec, url=store.db_url, heartbeat_s=args.heartbeat, sampler=sampler))
            print(f"{spec.name}: {spec.trials} trials, {spec.parallel} in flight, sampler {spec.sampler.name}, "
                  f"{spec.replicates} replicate(s) x 2 runs per trial", file=sys.stderr)
            session = run_search(
                store, spec, _executor_factory(args), search=search, heartbeat_s=args.heartbeat,
                seed_from=args.seed_from_sweep, progress=_progress(args, spec.name),
                options=SearchOptions(max_attempts=args.max_attempts, fail_fast=args.fail_fast),
            )
        except NameTaken as exc:
            raise UsageError(f"name: {exc}") from None
        except SeedError as exc:
            raise UsageError(f"--seed-from-sweep: {exc}") from None
        print(_session_line(session, store))
        print(summary_text(search.study, spec, top=args.top))
        if args.plots is not None:
            written = write_plots(search.study, spec, args.plots)
            print(f"figures: {', '.join(str(p) for p in written) or 'none (too few complete trials)'}")
        search.close()
    status = session.report.status
    if status == "interrupted":
        print(f"interrupted; resume with: flushsweep search {args.spec}", file=sys.stderr)
        return 130
    return 0 if status == "done" else 1


def _load(path: Path) -> Any:
    from sweep.search import load_search_spec

    try:
        return load_search_spec(path)
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def _stored(args: argparse.Namespace, name: str) -> Any:
    """The spec a stored search was started with (read-only: a mistyped name creates nothing)."""
    from storage import StoreError
    from sweep.search import parse_search_spec

    try:
        with open_store(args, readonly=True) as store:
            record = store.find_sweep(name)
            searches = ", ".join(s.name for s in store.sweeps() if s.kind == "search") or "none yet"
    except StoreError as exc:
        raise UsageError(f"SPEC: {name!r} is not a spec file, and no stored search can be resumed ({exc})") from None
    if record is None or record.kind != "search":
        raise UsageError(f"SPEC: {name!r} is neither a spec file nor a stored search; stored searches: {searches}")
    try:
        spec = parse_search_spec(record.spec_text, source=f"search {name}")
    except SpecError as exc:
        raise UsageError(f"the stored spec of {name!r} no longer parses ({exc}); run it from its file") from None
    return dataclasses.replace(spec, name=name)


def _checked(make: Any) -> Any:
    try:
        return make()
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def _overridden(spec: Any, args: argparse.Namespace) -> Any:
    changes = {k: v for k, v in (("trials", args.trials), ("parallel", args.parallel)) if v is not None}
    return dataclasses.replace(spec, **changes) if changes else spec


def _progress(args: argparse.Namespace, label: str) -> Any:
    from sweep.search._driver import TrialProgress

    if args.progress == "none":
        return None
    return TrialProgress(label, stream=sys.stderr, tty=None if args.progress == "auto" else args.progress == "bar")


def _executor_factory(args: argparse.Namespace) -> Any:
    from sweep._cliutil import executor_factory
    from sweep._executor import InProcessExecutor

    if args.local:
        return lambda: InProcessExecutor(workers=1)
    return executor_factory(args)


def _session_line(session: Any, store: Any) -> str:
    r = session.report
    told = ", ".join(f"{n} {k}" for k, n in sorted(r.told.items())) or "none"
    parts = [f"search {r.search}: {r.status}; {r.trials} trials this session ({told})"]
    if session.seed is not None:
        s = session.seed
        parts.append(f"{r.seeded} seeded from {s.sweep} ({s.queued} queued, {s.already} already in the study, "
                     f"{s.outside} outside the space, {s.incomplete} incomplete)")
    if session.recovered_at_start or r.recovered:
        parts.append(f"{session.recovered_at_start + r.recovered} trials of a dead driver re-queued")
    parts.append(f"runs: {r.runs_simulated} simulated, {r.runs_reused} read from the store")
    if r.runs_failed:
        parts.append(f"{r.runs_failed} failed")
    url = getattr(getattr(store, "location", None), "safe_db_url", None) or "the store's database"
    parts.append(f"study {r.search!r} in {url} (optuna-dashboard shows it)")
    return "; ".join(parts)
