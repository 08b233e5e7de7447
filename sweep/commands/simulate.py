"""`flushsweep simulate`: one run (or one run per flush mode) in this process, no store."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from sweep.cli import UsageError
from sweep.tables import format_table
from workers import FLUSH_MODES, RunConfig, RunResult, field_names, simulate
from workers.config import FIELD_CHOICES, coerce, field_default, field_doc

#: What the table shows, in order, with a unit-bearing label.
SHOWN = [
    ("outcome", "outcome"), ("real_s", "real (s)"), ("user_s", "user (s)"), ("sys_s", "sys (s)"),
    ("ops_per_s", "ops/s"), ("shootdowns", "shootdowns"), ("ipis", "IPIs"), ("vm_exits", "VM exits"),
    ("hypercalls", "hypercalls"), ("deferred_flushes", "deferred flushes"), ("full_flushes", "full flushes"),
    ("fine_flushes", "fine flushes"), ("spin_s", "ack spin (s)"), ("lock_wait_s", "lock wait (s)"),
    ("lat_p50_us", "shootdown p50 (us)"), ("lat_p99_us", "shootdown p99 (us)"), ("lat_max_us", "shootdown max (us)"),
    ("preemptions", "vCPU preemptions"), ("ple_exits", "PLE exits"), ("pcpu_util", "pCPU util"),
    ("sim_events", "events"), ("engine_wall_s", "engine wall (s)"),
]
#: Ratios printed by --compare: baseline / mode for times (bigger = PV helps), mode / baseline for throughput.
RATIOS = [("real_s", "real"), ("sys_s", "sys"), ("lat_p99_us", "p99")]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate one run and print its metrics", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML file of RunConfig fields (flags override it)")
    p.add_argument(
        "--compare",
        help="comma-separated flush modes to run side by side, e.g. native,hyperv-pv "
        "(hyperv-pv always runs with enlightenments on; the others as configured)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--trace", type=Path, help="write hyperv-pv hypercalls (KVM trace-point fields) to this Parquet file")
    add_run_config_flags(p.add_argument_group("run config (every RunConfig field; the defaults are the 2018 test)"))
    p.set_defaults(func=run)


def add_run_config_flags(group: Any) -> None:
    """One flag per RunConfig field, generated from the dataclass: its doc line, default and allowed values.

    Values stay strings until ``config_from_args`` (RunConfig's own coercion and
    validation), so a bad value is the same one-line error as in a spec or a CSV.
    """
    for f in fields(RunConfig):
        default = field_default(f.name)
        choices = FIELD_CHOICES.get(f.name) or (("true", "false") if isinstance(default, bool) else None)
        metavar = "{" + ",".join(choices) + "}" if choices else _METAVARS.get(type(default), "TEXT")
        shown = str(default).lower() if isinstance(default, bool) else default
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", metavar=metavar, default=None,
                           help=f"{_escape(field_doc(f.name))} (default: {_escape(str(shown))})")


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _escape(text: str) -> str:
    """argparse %-formats help strings: a literal percent sign must be doubled."""
    return text.replace("%", "%%")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = yaml.safe_load(args.config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"--config {args.config}: {exc}".splitlines()[0]) from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {args.config}: expected a mapping of RunConfig fields")
        data.update(loaded)
    for name in field_names():
        value = getattr(args, f"cfg_{name}")
        if value is not None:
            data[name] = coerce(name, value)
    return RunConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    modes = [m.strip() for m in args.compare.split(",")] if args.compare else [cfg.flush_mode]
    for m in modes:
        if m not in FLUSH_MODES:
            raise UsageError(f"--compare: {m!r} is not a flush mode; use {', '.join(FLUSH_MODES)}")
    trace: list[dict[str, Any]] | None = [] if args.trace else None
    results: list[tuple[str, RunResult]] = []
    for m in modes:
        # hyperv-pv *is* an enlightenment: comparing it against an unenlightened baseline is the 2018 setup
        mode_cfg = cfg.replace(flush_mode=m, **({"enlightenments": True} if m == "hyperv-pv" else {}))
        results.append((m, simulate(mode_cfg, trace=trace if m == "hyperv-pv" else None)))
    if args.trace:
        write_trace(args.trace, trace or [])
    if args.json:
        out = {"config": cfg.to_dict(), "results": {m: r.to_dict() for m, r in results}}
        print(json.dumps(out, indent=2))
        return 0
    print(f"config: {cfg.canonical_json()}")
    header = ["metric", *[m for m, _ in results]]
    rows = [[label, *[_fmt(getattr(r, key)) for _, r in results]] for key, label in SHOWN]
    if len(results) > 1:
        base_mode, base = results[0]
        for key, label in RATIOS:
            rows.append([f"{label} {base_mode}/mode", "", *[_ratio(getattr(base, key), getattr(r, key)) for _, r in results[1:]]])
        rows.append([f"ops/s mode/{base_mode}", "", *[_ratio(r.ops_per_s, base.ops_per_s) for _, r in results[1:]]])
    print(format_table(header, rows))
    for m, r in results:
        if r.outcome == "crash":
            print(
                f"note: {m} crashes at boot ({r.crash_reason}): Windows Server 2016 with >64 vCPUs, a non-flat "
                "topology and Hyper-V enlightenments needs PV TLB flush; use --enlightenments false or a flat topology"
            )
    if args.trace:
        print(f"trace: {len(trace or [])} hypercalls -> {args.trace}")
    return 0


def trace_schema():
    """KVM trace-point fields; masks, addresses and flags are u64 in KVM, so uint64 here."""
    import pyarrow as pa

    return pa.schema([
        ("time_ns", pa.int64()), ("caller", pa.int32()),
        ("code", pa.uint16()), ("fast", pa.bool_()), ("rep_cnt", pa.uint16()), ("rep_idx", pa.uint16()),
        ("var_cnt", pa.uint16()), ("processor_mask", pa.uint64()), ("valid_bank_mask", pa.uint64()),
        ("format", pa.uint64()), ("address_space", pa.uint64()), ("flags", pa.uint64()), ("status", pa.uint16()),
    ])


def write_trace(path: Path, records: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(records, schema=trace_schema())
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}x" if b else "-"
