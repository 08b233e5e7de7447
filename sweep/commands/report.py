"""`flushsweep report SPEC`: a capacity-planning report, run and published once per period.

Runs whatever runs the report needs that the store does not have yet (through
the sweep engine, on Ray like `flushsweep run`; runs already stored are reused),
then publishes a self-contained HTML report with PNG figures, a plain-text
summary (also printed here, for cron mail and CI logs) and, with --pdf, a PDF
under <store>/reports/<name>/<period>/, listed in <store>/reports/index.html.

A report is published once per (name, period): running it again in the same
period prints the published summary and publishes nothing (--force redoes it).

Exit status: 0 published or already published; 1 runs failed (nothing
published; run it again to finish); 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from sweep._cliutil import add_execution_arguments, add_store_arguments, executor_factory, make_progress, open_store, run_options
from sweep._yaml import SpecError
from sweep.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="run and publish a capacity-planning report (once per period)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=Path, metavar="SPEC", help="report spec, e.g. configs/reports/capacity.yaml")
    p.add_argument("--force", action="store_true", help="publish again even if this period already has a report")
    p.add_argument("--pdf", action="store_true", help="also write report.pdf (all figures and the summary)")
    p.add_argument("--study", metavar="NAME", default=None, help="Optuna study for the search section (default: the spec's search.study)")
    p.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="the day whose period the report is for (default: today, UTC)")
    p.add_argument("--dry-run", action="store_true", help="validate the spec and print the plan; run nothing, store nothing")
    p.add_argument("--in-process", action="store_true",
                   help="compute missing runs in this process instead of on Ray (small reports, debugging)")
    add_execution_arguments(p)
    add_store_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from sweep._executor import InProcessExecutor
    from sweep.report import load_report_spec, make_report, period_key, plan_report, today_utc

    day = args.date or today_utc()
    try:
        spec = load_report_spec(args.spec)
        plan = plan_report(spec, period_key(spec.period, day))  # every planning error before the store is touched
        if args.dry_run:
            print(f"report {spec.name}, period {plan.period_key} ({spec.period}): sweep {plan.sweep_name}")
            print(f"plan: {plan.describe()}")
            print(f"SLO: {spec.slo.describe()}; pool of {spec.pool_hosts} hosts; study: {args.study or spec.study or 'none'}")
            return 0
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    executor = (lambda: InProcessExecutor()) if args.in_process else executor_factory(args)
    with open_store(args) as store:
        try:
            outcome = make_report(
                store, spec, day=day, executor=executor, force=args.force, pdf=args.pdf, study=args.study,
                options=run_options(args), progress=make_progress(args, spec.name),
                on_start=lambda ex: print(f"{spec.name}: running on {ex.describe()}", file=sys.stderr),
                log=lambda line: print(line, file=sys.stderr),
            )
        except SpecError as exc:
            raise UsageError(str(exc)) from None
    if outcome.status == "already-published":
        print(f"report {spec.name} for {outcome.period_key} is already published at {outcome.path}; "
              "nothing published (--force redoes it)", file=sys.stderr)
    sys.stdout.write(outcome.summary)
    if outcome.status == "incomplete":
        return 130 if outcome.sweep is not None and outcome.sweep.status == "interrupted" else 1
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None
