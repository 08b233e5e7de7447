"""`flushsweep store check|compact|info`: look after a store's files and manifest.

``check`` verifies every result file against the manifest (size, SHA-256 checksum,
Parquet footer, runs pointing at it) and reports problems; ``--repair`` moves damaged
files to ``<store>/quarantine/`` (kept, never deleted) and sends their runs back to
pending, so `flushsweep resume` recomputes them. On a store it may write, ``check``
first opens it as every writer does (upgrading it and removing what a crashed commit
left); on a read-only one (a snapshot, a read-only mount) it only reads. ``compact``
merges each sweep's small files into large ones, atomically: a crash midway leaves
the results as they were.
"""

from __future__ import annotations

import argparse

from storage.cli_options import add_store_args, store_from_args, store_is_writable
from sweep.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="check, compact or describe the result store", description=__doc__)
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="verify result files against the manifest (checksums)")
    check.add_argument("--repair", action="store_true",
                       help="set damaged files aside and requeue their runs; remove files no commit finished")
    add_store_args(check)
    check.set_defaults(func=run_check)

    compact = actions.add_parser("compact", help="merge small result files, atomically")
    compact.add_argument("--target-rows", type=int, default=500_000, metavar="N",
                         help="rows per merged file (default 500000)")
    compact.add_argument("--sweep", metavar="NAME", help="only this sweep's files (default: every sweep's)")
    add_store_args(compact)
    compact.set_defaults(func=run_compact)

    info = actions.add_parser("info", help="where the store is and what it holds")
    add_store_args(info)
    info.set_defaults(func=run_info)


def run_check(args: argparse.Namespace) -> int:
    # Without --repair, a store we cannot write is only read: no lock file, journal or migration.
    readonly = not args.repair and not store_is_writable(args)
    with store_from_args(args, readonly=readonly) as store:
        for note in store.repairs:
            print(f"repaired on open: {note}")
        problems = store.check(repair=args.repair)
        summary = store.summary()
    for line in problems:
        print(line)
    files, rows = summary["files"], summary["rows"]
    if not problems:
        print(f"ok: {files} result file(s), {rows} row(s) match the manifest")
        return 0
    if args.repair:
        print(f"repaired {len(problems)} problem(s); `flushsweep resume SWEEP` recomputes requeued runs")
        return 0
    print(f"{len(problems)} problem(s); `flushsweep store check --repair` fixes what it can")
    return 1


def run_compact(args: argparse.Namespace) -> int:
    if args.target_rows < 2:
        raise UsageError(f"--target-rows: must be >= 2, got {args.target_rows}")
    with store_from_args(args) as store:
        if args.sweep is not None and store.find_sweep(args.sweep) is None:
            known = ", ".join(s.name for s in store.sweeps()) or "none"
            raise UsageError(f"--sweep: no sweep named {args.sweep!r} in this store; known sweeps: {known}")
        before = store.file_count(args.sweep)  # the files this command can touch: that sweep's, or all
        removed = store.compact(target_rows=args.target_rows, sweep=args.sweep)
        after = store.file_count(args.sweep)
    of = f" of sweep {args.sweep}" if args.sweep is not None else ""
    if removed == 0:
        print(f"nothing to compact: {before} result file(s){of}")
    else:
        print(f"merged {removed} small file(s){of}: {before} -> {after} result file(s)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    with store_from_args(args, readonly=True) as store:
        summary = store.summary()
    runs = summary.pop("runs")
    for key, value in summary.items():
        print(f"{key:24} {value}")
    print(f"{'runs':24} " + (", ".join(f"{k} {v}" for k, v in sorted(runs.items())) or "none"))
    return 0
