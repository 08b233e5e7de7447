"""The end-of-sweep summary: PV benefit by the swept axes, crashes, failures, time.

PV benefit is paired: each run carries its baseline's run_id, so benefit is the
geometric mean over replicates of baseline / PV for real, sys and p99 latency
(higher is better: "x times faster") and PV / baseline for ops/s. A pair in
which either side crashed has no benefit; crashes are counted instead.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sweep._controller import SweepReport
from sweep._progress import format_duration

if TYPE_CHECKING:
    import pandas

#: Benefit columns: (title, metric, baseline-over-PV?).
BENEFITS = (("real x", "real_s", True), ("sys x", "sys_s", True), ("p99 x", "lat_p99_us", True), ("ops/s x", "ops_per_s", False))
#: Per-group means shown when a sweep has no paired comparison.
PLAIN_METRICS = (("real s", "real_s"), ("sys s", "sys_s"), ("p99 us", "lat_p99_us"), ("ops/s", "ops_per_s"))


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


def format_table(df: "pandas.DataFrame") -> str:
    """A plain aligned text table (numbers right-aligned, 3 significant digits)."""
    if df.empty:
        return "(no rows)"
    cols = list(df.columns)
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(str(c)), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    numeric = [df[c].dtype.kind in "iufb" for c in cols]
    def line(values: Iterable[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()
    return "\n".join([line(str(c) for c in cols), line("-" * w for w in widths), *(line(r) for r in cells)])


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
            results = results.assign(overcommit=results["vcpus"] / results["pcpus"])
        group = [c for c in by if c != compare_field and c != "seed"]
        if compare_field and results["baseline_run_id"].notna().any():
            lines += ["", f"PV benefit (baseline / PV; ops/s: PV / baseline), geometric mean over seeds, by {', '.join(group) or 'sweep'}:"]
            lines.append(format_table(benefit_table(results, group)))
        else:
            lines += ["", f"mean metrics by {', '.join(group) or 'sweep'}:", format_table(metrics_table(results, group))]
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


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


__all__ = ["benefit_table", "format_table", "metrics_table", "summarize"]
