"""Scheduled capacity-planning reports: ``flushsweep report SPEC`` and ``flushsweep schedule print``.

A report spec (configs/reports/*.yaml) names host and VM shapes, workloads,
flush modes, consolidation ratios, an SLO and a period. ``make_report`` runs the
missing runs through the sweep engine (everything already stored is reused),
then publishes a self-contained HTML report, PNG figures, a plain-text summary
and optionally a PDF under ``<store>/reports/<name>/<period>/``, once per period.

Example:
    >>> from sweep.report import parse_report_spec, plan_report
    >>> spec = parse_report_spec("name: demo\\nhosts: [{name: h, pcpus: 8}]\\n"
    ...     "vms: [{guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]\\n"
    ...     "overcommit: [1, 2]\\nslo: {metric: lat_p99_us, max: 500}\\nbase: {iterations: 2, pages: 16}\\n")
    >>> plan = plan_report(spec, "2025-W14")
    >>> plan.sweep_name, len(plan.expansion.runs)
    ('report.demo.2025-W14', 4)
"""

from sweep.report._analysis import Analysis, Capacity, Curve, HazardRow, analyse
from sweep.report._build import ReportOutcome, make_report
from sweep.report._capacity import Point, failover_ratio, failover_safe_ratio, highest_ratio, value_at
from sweep.report._period import PERIOD_KINDS, period_key, today_utc
from sweep.report._plan import Cell, ReportPlan, plan_report, sweep_name_for
from sweep.report._publish import AlreadyPublished, ReportShelf
from sweep.report._schedule import SCHEDULE_KINDS, ScheduleOptions, render_schedule
from sweep.report._search import SearchFindings, search_findings
from sweep.report._spec import HostShape, ReportSpec, Slo, VmShape, load_report_spec, parse_report_spec

__all__ = [
    "AlreadyPublished",
    "Analysis",
    "Capacity",
    "Cell",
    "Curve",
    "HazardRow",
    "HostShape",
    "PERIOD_KINDS",
    "Point",
    "ReportOutcome",
    "ReportPlan",
    "ReportShelf",
    "ReportSpec",
    "SCHEDULE_KINDS",
    "ScheduleOptions",
    "SearchFindings",
    "Slo",
    "VmShape",
    "analyse",
    "failover_ratio",
    "failover_safe_ratio",
    "highest_ratio",
    "load_report_spec",
    "make_report",
    "parse_report_spec",
    "period_key",
    "plan_report",
    "render_schedule",
    "search_findings",
    "sweep_name_for",
    "today_utc",
    "value_at",
]
