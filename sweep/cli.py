"""The `flushsweep` command line: a thin dispatcher over sweep/commands/*.

Each command module exposes ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int``. Errors a user can fix are raised as ``UsageError``
(or ConfigError/StoreError) and printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

#: Command modules under sweep.commands, in the order `flushsweep --help` lists them.
COMMANDS = ["simulate", "run", "resume", "status", "cancel", "store", "query", "calibrate", "report", "schedule", "search"]


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flushsweep",
        description="Where does paravirtual TLB flush help, by how much, and how far can I overcommit?",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"sweep.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from storage import StoreError
    from workers import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, StoreError) as exc:
        print(f"flushsweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flushsweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
