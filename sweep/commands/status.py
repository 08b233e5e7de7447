"""`flushsweep status [SWEEP]`: progress of every sweep, or one sweep and its failed runs."""

from __future__ import annotations

import argparse

from sweep._cliutil import add_store_arguments, open_store
from sweep._summary import format_table
from sweep.cli import UsageError

#: Failed runs listed for one sweep.
SHOWN_FAILURES = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the progress of sweeps", description=__doc__)
    p.add_argument("sweep", nargs="?", metavar="SWEEP", help="one sweep (default: all)")
    add_store_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    with open_store(args, readonly=True) as store:
        if args.sweep is None:
            records = store.sweeps()
            if not records:
                print("no sweeps yet; start one with: flushsweep run configs/sweeps/quickstart.yaml")
                return 0
        else:
            record = store.find_sweep(args.sweep)
            if record is None:
                raise UsageError(f"SWEEP: no sweep named {args.sweep!r}; flushsweep status lists the sweeps")
            records = [record]
        rows = []
        for r in records:
            counts = store.progress(r.name)
            total = sum(counts.values())
            rows.append({
                "sweep": r.name, "kind": r.kind, "status": r.status,
                "done": counts.get("done", 0), "failed": counts.get("failed", 0),
                "running": counts.get("running", 0), "pending": counts.get("pending", 0), "total": total,
                "progress": f"{100.0 * counts.get('done', 0) / total:.0f}%" if total else "-",
                "created": r.created.strftime("%Y-%m-%d %H:%M"),
            })
        print(format_table(pd.DataFrame(rows)))
        if args.sweep is not None:
            failed = store.runs(args.sweep, status="failed")
            if failed:
                print(f"\n{len(failed)} failed runs (flushsweep resume {args.sweep} retries them):")
                for run in failed[:SHOWN_FAILURES]:
                    last = [ln for ln in (run.error or "").strip().splitlines() if ln.strip()]
                    print(f"  {run.run_id}  attempts {run.attempts}  node {run.node or '-'}: {last[-1] if last else '?'}")
                if len(failed) > SHOWN_FAILURES:
                    print(f"  ... and {len(failed) - SHOWN_FAILURES} more")
        return 0
