"""`flushsweep cancel SWEEP`: mark a sweep cancelled; a driver running it stops within seconds.

Finished runs stay stored; the rest stay pending, and ``flushsweep resume`` can
still finish the sweep later.
"""

from __future__ import annotations

import argparse

from sweep._cliutil import add_store_arguments, open_store
from sweep.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="cancel a sweep (a running driver stops cleanly)", description=__doc__)
    p.add_argument("sweep", metavar="SWEEP", help="the sweep's name")
    add_store_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        record = store.find_sweep(args.sweep)
        if record is None:
            raise UsageError(f"SWEEP: no sweep named {args.sweep!r}; flushsweep status lists the sweeps")
        if record.status == "done":
            print(f"{args.sweep}: already done; nothing to cancel")
            return 0
        store.set_sweep_status(args.sweep, "cancelled")
        counts = store.progress(args.sweep)
        print(f"{args.sweep}: cancelled ({counts.get('done', 0)} runs done stay stored; "
              f"{counts.get('pending', 0) + counts.get('running', 0)} not run; flushsweep resume {args.sweep} finishes it)")
        return 0
