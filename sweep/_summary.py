"""The end-of-sweep summary: PV benefit by the swept axes, crashes, failures, time.

PV benefit is paired: each run carries its baseline's run_id, so benefit is the
geometric mean over replicates of baseline / PV for real, sys and p99 latency
(higher is better: "x times faster") and PV / baseline for ops/s. A pair in
which either side crashed has no benefit; crashes are counted instead.

Topology reads as sockets x cores per socket x threads per core (``SxCxT``), and
where it changed nothing (the rows of a group agree on every metric) the group
is one row, said once, so the rows where topology matters stand out.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from storage.benefits import BENEFITS as PAIRED_BENEFITS
from sweep._controller import SweepReport
from sweep._progress import format_duration
from sweep.tables import format_frame

if TYPE_CHECKING:
    import pandas

#: Benefit columns: (title, metric, baseline-over-PV?), from the definition the store's ``paired`` view uses.
BENEFITS = tuple((f"{b.label} x", b.metric, not b.pv_over_baseline) for b in PAIRED_BENEFITS)
#: Per-group means shown when a sweep has no paired comparison.
PLAIN_METRICS = (("real s", "real_s"), ("sys s", "sys_s"), ("p99 us", "lat_p99_us"), ("ops/s", "ops_per_s"))
#: How a topology reads in a table header: the value is sockets x cores per socket x threads per core.
TOPOLOGY_HEADER = "topology (SxCxT)"
TOPOLOGY_LEGEND = "topology SxCxT = sockets x cores per socket x threads per core"
#: A collapsed row's topology: every topology of the group gave the same numbers.
ANY_TOPOLOGY = "any"
#: The one formatter (sweep.tables); other modules import it from here.
format_table = format_frame


def benefit_table(results: "pandas.DataFrame", by: Sequence[str]) -> "pandas.DataFrame":
    """PV benefit per group of ``by`` columns, from result rows that carry ``baseline_run_id``.

    Returns one row per group with ``pairs``, the benefit columns, and crash
    counts on each side (``crash base``, ``crash pv``).
    """
    import pandas as pd

    paired = results[results["baseline_run_id"].notna()]
    base = results.add_suffix("__base").rename(columns={"run_id__base": "baseline_run_id"})
    joined = paired.merge(base, on="baseline_run_id", how="inner", suffixes=("", "__dup"))
    by = [c for c in by if c in joined.columns]
    rows: list[dict[str, Any]] = []
    groups = joined.groupby(by, sort=True, dropna=False) if by else [((), joined)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ok = group[(group["outcome"] == "ok") & (group["outcome__base"] == "ok")]
        row: dict[str, Any] = dict(zip(by, key))
        row["pairs"] = len(group)
        for title, metric, base_over_pv in BENEFITS:
            num, den = (ok[f"{metric}__base"], ok[metric]) if base_over_pv else (ok[metric], ok[f"{metric}__base"])
            row[title] = _geomean(n / d for n, d in zip(num, den) if d > 0 and n > 0)
        row["crash base"] = int((group["outcome__base"] == "crash").sum())
        row["crash pv"] = int((group["outcome"] == "crash").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_table(results: "pandas.DataFrame", by: Sequence[str]) -> "pandas.DataFrame":
    """Mean metrics per group (for sweeps without a paired comparison)."""
    import pandas as pd

    by = [c for c in by if c in results.columns]
    rows: list[dict[str, Any]] = []
    groups = results.groupby(by, sort=True, dropna=False) if by else [((), results)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ok = group[group["outcome"] == "ok"]
        row: dict[str, Any] = dict(zip(by, key))
        row["runs"] = len(group)
        for title, metric in PLAIN_METRICS:
            row[title] = float(ok[metric].mean()) if len(ok) else math.nan
        row["crashes"] = int((group["outcome"] == "crash").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def collapse_topology(table: "pandas.DataFrame", group: Sequence[str]) -> tuple["pandas.DataFrame", list[dict[str, Any]]]:
    """Merge rows that differ only by topology and agree on every metric into one row (topology ``any``).

    Topology matters where the guest or the flush depends on it (Windows Server 2016
    above 64 vCPUs, say) and nowhere else; repeating identical rows hides the rows
    where it does. Counts (pairs, runs, crashes) are summed. Returns the table and
    the group keys (without topology) that were merged.
    """
    import pandas as pd

    if "topology" not in group or table.empty:
        return table, []
    keys = [c for c in group if c != "topology"]
    counts = [c for c in table.columns if c in ("pairs", "runs", "crashes", "crash base", "crash pv")]
    metrics = [c for c in table.columns if c not in (*group, "pairs", "runs")]  # crash counts must agree too
    rows: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    parts = table.groupby(keys, sort=False, dropna=False) if keys else [((), table)]
    for key, part in parts:
        records = part.to_dict("records")
        if len(records) > 1 and all(_same(r[m], records[0][m]) for r in records[1:] for m in metrics):
            row = {**records[0], "topology": ANY_TOPOLOGY, **{c: sum(r[c] for r in records) for c in counts}}
            rows.append(row)
            merged.append({k: records[0][k] for k in keys})
        else:
            rows.extend(records)
    return pd.DataFrame(rows, columns=table.columns), merged


def _topology_note(merged: list[dict[str, Any]], total: int) -> str:
    if not merged:
        return ""
    return (f"topology changed nothing in {len(merged)} of {total} groups: each is one row with topology "
            f"{ANY_TOPOLOGY!r} ({_describe_groups(merged)})")


def _describe_groups(groups: list[dict[str, Any]]) -> str:
    """The merged groups, briefly: the values each key takes among them (``vcpus 8, 16``)."""
    if not groups or not groups[0]:
        return "the whole sweep"
    parts = []
    for key in groups[0]:
        values = list(dict.fromkeys(g[key] for g in groups))
        parts.append(f"{key} {', '.join(map(_show, values))}")
    return "; ".join(parts)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return bool(a == b)


def _shown_table(table: "pandas.DataFrame", group: Sequence[str]) -> list[str]:
    """The table with its topology rows merged where topology changed nothing, the header saying what SxCxT means."""
    collapsed, merged = collapse_topology(table, group)
    keys = [c for c in group if c != "topology"]
    total = len(collapsed.drop_duplicates(keys)) if keys and not collapsed.empty else 1
    lines = [format_table(collapsed.rename(columns={"topology": TOPOLOGY_HEADER}))]
    if "topology" in group:
        lines.append(TOPOLOGY_LEGEND)
        note = _topology_note(merged, total)
        if note:
            lines.append(note)
    return lines


def summarize(store: Any, report: SweepReport, *, by: Sequence[str], compare_field: str | None) -> str:
    """The text printed when a sweep session ends."""
    lines = [
        f"sweep {report.sweep}: {report.status}; {report.done} done, {report.skipped} skipped, "
        f"{report.failed} failed, {report.remaining} remaining of {report.total}; "
        f"{report.retried} retried; {format_duration(report.elapsed_s)} total"
    ]
    try:
        results = store.to_pandas(sweep=report.sweep)
    except Exception as exc:  # a summary must never hide the sweep's own outcome
        lines.append(f"(no summary: {exc})")
        results = None
    if results is not None and len(results):
        if "overcommit" in by and "overcommit" not in results.columns:
            vms = results["vms"].fillna(1) if "vms" in results.columns else 1
            hogs = results["background_vcpus"].fillna(0) if "background_vcpus" in results.columns else 0
            results = results.assign(overcommit=(vms * results["vcpus"] + hogs) / results["pcpus"])
        group = [c for c in by if c != compare_field and c != "seed"]
        if compare_field and compare_field in results.columns:
            compared = results.loc[results["baseline_run_id"].notna(), compare_field].dropna().unique()
            if len(compared) > 1:  # several PV modes against one baseline: a row for each
                group.append(compare_field)
        if compare_field and results["baseline_run_id"].notna().any():
            lines += ["", f"PV benefit (baseline / PV; ops/s: PV / baseline), geometric mean over seeds, by {', '.join(group) or 'sweep'}:"]
            lines += _shown_table(benefit_table(results, group), group)
        else:
            lines += ["", f"mean metrics by {', '.join(group) or 'sweep'}:", *_shown_table(metrics_table(results, group), group)]
    if report.failures:
        lines += ["", f"{len(report.failures)} runs failed (flushsweep status {report.sweep} lists them):"]
        for f in report.failures[:10]:
            lines.append(f"  {f.run_id}  after {f.attempts} attempts: {f.summary}")
        if len(report.failures) > 10:
            lines.append(f"  ... and {len(report.failures) - 10} more")
    return "\n".join(lines)


def _geomean(values: Iterable[float]) -> float:
    logs = [math.log(v) for v in values]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


__all__ = ["benefit_table", "collapse_topology", "format_table", "metrics_table", "summarize"]
