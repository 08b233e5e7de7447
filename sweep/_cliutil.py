"""Argument helpers shared by `flushsweep run`, `resume`, `status` and `cancel`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sweep._controller import RunOptions
from sweep._progress import Progress


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--store DIR --db URL`` (defaults from FLUSHSWEEP_STORE / FLUSHSWEEP_DB)."""
    from storage.cli_options import add_store_args

    add_store_args(parser)


def open_store(args: argparse.Namespace, *, readonly: bool = False) -> Any:
    """The ResultStore the arguments name; raises StoreError (one line) when it cannot be opened."""
    from storage.cli_options import store_from_args

    return store_from_args(args, readonly=readonly)


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how runs execute."""
    group = parser.add_argument_group("execution")
    group.add_argument("--address", default=None, help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (default: start an embedded local Ray)")
    group.add_argument("--workers", type=positive_int, default=None, help="concurrent tasks (default: CPUs of this machine, or of the cluster)")
    group.add_argument("--max-attempts", type=positive_int, default=3, help="tries per run before it is recorded failed (default 3)")
    group.add_argument("--max-retries", type=int_at_least(0), default=3, help="Ray retries of a task whose worker or node died (default 3)")
    group.add_argument("--fail-fast", action="store_true", help="stop at the first run that fails for good")
    group.add_argument("--ship-code", action="store_true", help="upload the project to the cluster (Ray working_dir) instead of using a shared disk")
    group.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto", help="progress display (default: a bar on a terminal, lines otherwise)")


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(max_attempts=args.max_attempts, fail_fast=args.fail_fast)


def make_progress(args: argparse.Namespace, label: str) -> Progress | None:
    if args.progress == "none":
        return None
    tty = None if args.progress == "auto" else args.progress == "bar"
    return Progress(label, stream=sys.stderr, tty=tty)


def executor_factory(args: argparse.Namespace, *, batch: Any = None):
    """A factory, so Ray starts only when a sweep has something to run.

    ``batch`` replaces what each task runs (default: the real simulation of named profiles).
    """

    def make() -> Any:
        from sweep._ray import ClusterError, RayExecutor
        from sweep.cli import UsageError

        extra = {} if batch is None else {"batch": batch}
        try:
            return RayExecutor(address=args.address, workers=args.workers, max_retries=args.max_retries,
                               ship_code=args.ship_code, **extra)
        except ClusterError as exc:
            raise UsageError(f"--address: {exc}" if args.address else str(exc)) from None

    return make


def int_at_least(low: int):
    """An argparse type: a whole number >= ``low``, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def stored_spec(record: Any) -> Any:
    """The spec a sweep was started with (for the summary's axes), or None if it no longer parses."""
    from sweep._spec import parse_spec
    from sweep._yaml import SpecError

    try:
        return parse_spec(record.spec_text, source=f"sweep {record.name}")
    except (SpecError, Exception):  # written by an older version, or not a sweep spec at all
        return None


def finish(store: Any, report: Any, spec: Any) -> int:
    """Print the summary table and turn the report into an exit status.

    0: every run done; 1: runs failed or the sweep was cancelled; 130: interrupted.
    """
    from sweep._summary import summarize

    by = summary_axes(spec)
    compare = spec.compare.field if spec is not None and spec.compare is not None else None
    print(summarize(store, report, by=by, compare_field=compare))
    if report.status == "interrupted":
        print(f"interrupted; finish with: flushsweep resume {report.sweep}", file=sys.stderr)
        return 130
    return 0 if report.status == "done" else 1


def summary_axes(spec: Any) -> list[str]:
    if spec is None:
        return ["vcpus", "topology", "pcpus", "flush_mode"]
    return [f for f in spec.swept_fields]
