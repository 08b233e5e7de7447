"""`flushsweep run SPEC`: expand a sweep spec and run what is not done yet.

Runs are identified by run_id (config + cost profile), so runs already stored,
by this sweep or any other, are skipped: running a spec again costs nothing and
an extended spec runs only the new runs. A sweep name that exists is extended
(same or different spec); ``flushsweep resume NAME`` finishes it without the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweep._cliutil import (
    add_execution_arguments,
    add_store_arguments,
    executor_factory,
    finish,
    make_progress,
    open_store,
    run_options,
)
from sweep._expand import Expansion, expand
from sweep._service import execute_sweep, start_sweep
from sweep._spec import SweepSpec, load_spec
from sweep._yaml import SpecError
from sweep.cli import UsageError
from sweep.tables import format_frame


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a sweep spec (runs already done are skipped)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=Path, metavar="SPEC", help="sweep spec, e.g. configs/sweeps/quickstart.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the expanded run count and a sample; run nothing, store nothing")
    p.add_argument("--sample", type=int, default=8, metavar="N", help="runs shown by --dry-run (default 8)")
    add_execution_arguments(p)
    add_store_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
        expansion = expand(spec)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    if args.dry_run:
        print(dry_run_text(spec, expansion, sample=args.sample))
        return 0
    with open_store(args) as store:
        start_sweep(store, spec, expansion)
        print(f"{spec.name}: {expansion.describe()}", file=sys.stderr)
        report = execute_sweep(
            store, spec.name, executor_factory(args), order=[r.run_id for r in expansion.runs],
            options=run_options(args), progress=make_progress(args, spec.name),
            on_start=lambda ex: print(f"{spec.name}: running on {ex.describe()}", file=sys.stderr),
        )
        return finish(store, report, spec)


def dry_run_text(spec: SweepSpec, expansion: Expansion, *, sample: int) -> str:
    """The plan: counts, axes, and the first runs with the fields that vary."""
    import pandas as pd

    axes = ", ".join(f"{a.name} ({len(a.values)})" if a.path != ("replicates",) else f"replicates ({len(a.values)})" for a in spec.axes)
    shown = sample_columns(spec)
    rows = [
        {"run_id": r.run_id[:12], **{c: _value(r.config, c) for c in shown},
         "baseline": (r.baseline_run_id or "")[:12]}
        for r in expansion.runs[: max(0, sample)]
    ]
    lines = [f"{spec.name}: {expansion.describe()}", f"axes: {axes or '(none)'}"]
    if rows:
        lines += [f"first {len(rows)} runs:", format_frame(pd.DataFrame(rows))]
    return "\n".join(lines)


def sample_columns(spec: SweepSpec) -> list[str]:
    cols: list[str] = []
    for f in spec.swept_fields:
        cols.extend(["vcpus", "pcpus"] if f == "overcommit" else [f])
    if spec.replicates:
        cols.append("seed")
    if spec.compare is not None:
        cols.extend(spec.compare.baseline_overrides)
    return list(dict.fromkeys(cols))


def _value(config, name: str):
    return getattr(config, name)
