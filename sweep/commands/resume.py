"""`flushsweep resume SWEEP`: finish an interrupted, crashed, cancelled or failed sweep.

Runs left running by a driver that died (even by SIGKILL) and runs that failed
are run again; runs already stored are not. Every run ends up stored once.
"""

from __future__ import annotations

import argparse
import sys

from sweep._cliutil import (
    add_execution_arguments,
    add_store_arguments,
    executor_factory,
    finish,
    make_progress,
    open_store,
    run_options,
    stored_spec,
)
from sweep._service import execute_sweep
from sweep.cli import UsageError

#: Sweeps only their own command can finish: a fit's runs name candidate profiles that exist on no
#: disk, and a search's pending runs mean nothing to its study unless its driver tells Optuna.
RESUMED_BY_OWN_COMMAND = {"calibration": "flushsweep calibrate", "search": "flushsweep search"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="finish an interrupted or crashed sweep", description=__doc__)
    p.add_argument("sweep", metavar="SWEEP", help="the sweep's name (flushsweep status lists them)")
    add_execution_arguments(p)
    add_store_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        record = store.find_sweep(args.sweep)
        if record is None:
            known = ", ".join(s.name for s in store.sweeps()[:10]) or "none yet"
            raise UsageError(f"SWEEP: no sweep named {args.sweep!r}; known sweeps: {known}")
        if record.kind in RESUMED_BY_OWN_COMMAND:
            command = RESUMED_BY_OWN_COMMAND[record.kind]
            raise UsageError(f"SWEEP: {args.sweep!r} is a {record.kind}; resume it by running `{command}` again with the same arguments")
        print(f"{args.sweep}: resuming (was {record.status})", file=sys.stderr)
        report = execute_sweep(
            store, args.sweep, executor_factory(args), options=run_options(args), progress=make_progress(args, args.sweep),
            on_start=lambda ex: print(f"{args.sweep}: running on {ex.describe()}", file=sys.stderr),
        )
        return finish(store, report, stored_spec(record))
