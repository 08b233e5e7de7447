"""`flushsweep query "SQL"`: read-only SQL (DuckDB) over a store.

Views: ``results`` (every result row: run_id, config fields, metrics, sweep),
``paired`` (each PV row with its baseline: base_* columns, benefit_real,
benefit_sys, benefit_p99, benefit_ops, overcommit), ``sweep_results`` (results once
per sweep that asked for them), ``runs``, ``sweeps``, ``sweep_runs`` and ``files``.
Statements that would write (COPY, CREATE, ATTACH, INSTALL, ...) are refused.
``--examples`` prints queries to start from.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from storage.cli_options import add_store_args, store_from_args
from storage.examples import format_examples
from sweep.cli import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="run read-only SQL over the results and metadata",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sql", nargs="?", metavar="SQL", help='one SELECT, e.g. "SELECT count(*) FROM results"')
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--out", metavar="FILE", type=Path, default=None, help="write to FILE instead of stdout")
    p.add_argument("--examples", action="store_true", help="print example queries and exit")
    add_store_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.examples:
        print(format_examples(), end="")
        return 0
    if not args.sql:
        raise UsageError('SQL: give a query, e.g. flushsweep query "SELECT count(*) FROM results", or --examples')
    if args.format == "parquet" and args.out is None:
        raise UsageError("--format parquet writes binary: add --out FILE")
    if args.out is not None and not args.out.parent.is_dir():
        raise UsageError(f"--out: directory {args.out.parent} does not exist; create it or choose another path")
    with store_from_args(args, readonly=True) as store:
        table = store.sql(args.sql)
    if args.out is None:
        _write(table, args.format, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            _write(table, args.format, fh)
        tmp.replace(args.out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--out: cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {table.num_rows} row(s) to {args.out}", file=sys.stderr)
    return 0


def _write(table: "pa.Table", fmt: str, out: BinaryIO) -> None:
    if fmt == "table":
        out.write(format_table(table).encode())
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)
    elif fmt == "json":
        rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
        out.write(json.dumps(rows, default=_json_default, indent=1, allow_nan=False).encode() + b"\n")
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, out)


def format_table(table: "pa.Table") -> str:
    """The shared plain table (all rows: add LIMIT for big results) and the row count."""
    from sweep.tables import format_arrow

    return f"{format_arrow(table)}\n({table.num_rows} row{'s' if table.num_rows != 1 else ''})\n"


def _json_value(value: object) -> object:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: object) -> object:
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    return str(value)
