"""`flushsweep calibrate MEASUREMENTS.csv --base PROFILE --fit NAMES --out NEW.yaml`: fit cost constants to measurements.

The CSV has one measured configuration per row: RunConfig fields as columns
(empty cell: the default), measured real_s / user_s / sys_s / ops_per_s (empty:
not measured), optionally label, weight or <figure>_weight (0: reported, not
fitted) and relative_to (another row's label: fit this row's figures as ratios
to that row's); lines starting with # are comments.

The named constants are searched on a log scale (default base/4 .. base*4) with
Optuna, starting from the base values, to minimise the weighted RMS relative
error over every measured figure. Simulations run on Ray; the study and every
run are kept in the store, so running the same command again continues the fit
(up to --trials in total) and recomputes nothing.

The report (measured vs simulated per point, fitted vs base constants, worst
residuals) is printed and written next to the profile as NEW.fit.txt. A fit whose
error is above --max-error prints FIT FAILED and exits 1 without writing the
profile (with --force it writes it, marked failed, and still exits 1).

Example:
    flushsweep calibrate configs/measurements/seed-2018.csv --base literature \\
        --fit fault_ns,hypercall_ns,ack_latency_ns --out configs/profiles/my-host.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sweep._cliutil import add_execution_arguments, add_store_arguments, open_store, positive_int
from sweep._controller import RunOptions
from sweep.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a cost profile's constants to measured points", description=__doc__,
                       formatter_class=_WithConstants, epilog=CONSTANTS_EPILOG)
    p.add_argument("measurements", type=Path, metavar="MEASUREMENTS.csv", help="one measured configuration per row")
    p.add_argument("--base", required=True, metavar="PROFILE", help="profile to start from (name or YAML path); bounds derive from it")
    p.add_argument("--fit", required=True, metavar="NAME,...", help="cost constants to fit, comma-separated (e.g. fault_ns,hypercall_ns)")
    p.add_argument("--out", required=True, type=Path, metavar="NEW.yaml", help="where to write the fitted profile")
    p.add_argument("--name", default=None, help="the fitted profile's name (default: the --out file's stem)")
    g = p.add_argument_group("fit")
    g.add_argument("--trials", type=positive_int, default=60, help="trials in the study in total (default 60); more continues a fit")
    g.add_argument("--target-error", type=_fraction, default=0.0, metavar="X", help="stop once a trial's error is <= X (default 0: run every trial)")
    g.add_argument("--max-error", type=_fraction, default=0.10, metavar="X", help="fail the fit above this RMS relative error (default 0.10)")
    g.add_argument("--force", action="store_true", help="write the profile even when the fit failed")
    g.add_argument("--spread", type=float, default=None, metavar="F", help="search base/F .. base*F on a log scale (default 4)")
    g.add_argument("--bound", action="append", default=[], metavar="NAME=LOW:HIGH", help="explicit bounds for one constant (repeatable)")
    g.add_argument("--seed", type=int, default=None, help="sampler seed (default: the study's; 0 for a new study)")
    g.add_argument("--sampler", choices=("cmaes", "tpe"), default=None, help="Optuna sampler (default: cmaes, tpe for one constant)")
    g.add_argument("--replicates", type=positive_int, default=1, help="simulation seeds averaged per point (default 1)")
    g.add_argument("--parallel-trials", type=positive_int, default=1, metavar="K", help="trials simulated at once (default 1)")
    g.add_argument("--study", default=None, help="study name (default: derived from the CSV hash, base profile and fitted constants)")
    g.add_argument("--in-process", action="store_true", help="simulate in this process instead of on Ray (small fits, debugging)")
    add_execution_arguments(p)
    add_store_arguments(p)
    p.set_defaults(func=main)


#: Stands for the list of cost constants in ``--help``; filled in only when help is shown (it reads a profile).
CONSTANTS_EPILOG = type("_Lazy", (str,), {})("")
#: The profile whose values ``--help`` lists.
HELP_PROFILE = "literature"


class _WithConstants(argparse.RawDescriptionHelpFormatter):
    def add_text(self, text: str | None) -> None:
        super().add_text(_constants_text() if text is CONSTANTS_EPILOG else text)


def _constants_text() -> str:
    from sweep.calibrate._output import base_comments
    from sweep.calibrate._space import constants_help
    from workers import ConfigError
    from workers.profiles import find_profile, load_profile

    try:
        return constants_help(load_profile(HELP_PROFILE), base_comments(find_profile(HELP_PROFILE)))
    except ConfigError as exc:  # an install without profiles: say so instead of failing --help
        return f"cost constants: cannot list them ({exc})"


def main(args: argparse.Namespace) -> int:
    import optuna

    from sweep.calibrate import (
        DEFAULT_SPREAD,
        CalibrationError,
        FitSettings,
        SearchSpace,
        base_comments,
        check_enough_points,
        failure_banner,
        fit,
        format_report,
        load_measurements,
        parse_bound,
        report_path,
        write_profile,
    )
    from sweep.calibrate._output import write_text_atomically
    from workers.profiles import find_profile, load_profile

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.out.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out {args.out}: a profile is a .yaml file, e.g. configs/profiles/my-host.yaml")
    base_path = find_profile(args.base)
    base = load_profile(args.base)
    try:
        ms = load_measurements(args.measurements)
        names = [n.strip() for n in args.fit.split(",") if n.strip()]
        space = SearchSpace.build(base, names, spread=DEFAULT_SPREAD if args.spread is None else args.spread, overrides=dict(parse_bound(b) for b in args.bound))
        check_enough_points(ms, space)
        settings = FitSettings(
            trials=args.trials, seed=args.seed, sampler=args.sampler, replicates=args.replicates,
            parallel_trials=args.parallel_trials, target_error=args.target_error, study=args.study,
            options=RunOptions(max_attempts=args.max_attempts, fail_fast=args.fail_fast),
        )
    except CalibrationError as exc:
        raise UsageError(str(exc)) from None
    log = None if args.progress == "none" else (lambda line: print(line, file=sys.stderr, flush=True))
    with open_store(args) as store:
        try:
            result = fit(store, ms, space, _executor(args), settings, log=log)
        except CalibrationError as exc:
            raise UsageError(str(exc)) from None
    report = format_report(result, max_error=args.max_error)
    print(report)
    if result.status == "interrupted":
        print(f"interrupted; run the same command again to continue study {result.study}", file=sys.stderr)
        return 130
    if result.status == "cancelled" or result.best is None:
        print(f"study {result.study}: {result.status}; no profile written", file=sys.stderr)
        return 1
    failed = result.error > args.max_error or result.status == "failed"
    if failed:
        print(failure_banner(result, max_error=args.max_error, forced=args.force, out=str(args.out)), file=sys.stderr)
        if not args.force:
            return 1
    name = args.name or args.out.stem
    write_profile(result, args.out, name=name, max_error=args.max_error, comments=base_comments(base_path))
    banner = "\n" + failure_banner(result, max_error=args.max_error, forced=True, out=str(args.out)) if failed else ""
    fit_txt = write_text_atomically(report_path(args.out), report + banner + "\n")
    print(f"wrote {args.out} (profile {name!r}) and {fit_txt}", file=sys.stderr)
    return 1 if failed else 0


def _executor(args: argparse.Namespace) -> Any:
    """A factory: Ray (or this process) starts only when something must be simulated."""
    from sweep._cliutil import executor_factory
    from sweep._executor import InProcessExecutor
    from sweep.calibrate import execute_candidate_batch

    if args.in_process:
        return lambda: InProcessExecutor(batch=execute_candidate_batch)
    return executor_factory(args, batch=execute_candidate_batch)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.10 (10%), got {text!r}") from None
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.10 (10%), got {value}")
    return value
