"""Scheduled capacity-planning reports: ``flushsweep report SPEC`` and ``flushsweep schedule print``.

A report spec names host and VM shapes, workloads, flush modes, KVM's Hyper-V
handler generations, an SLO and a period. ``make_report`` climbs a ladder per
shape and flush mode: ``vms`` = 1, 2, ... identical VMs on the host, one round
of rungs at a time through the sweep engine (everything already stored is
reused), until the SLO fails or ``max_vms``. It then publishes VMs per host,
with and without PV flush and with one pool host down, where PV loses and why,
as a self-contained HTML report, PNG figures, a plain-text summary and
optionally a PDF under ``<store>/reports/<name>/<period>/``, once per period.

Example:
    >>> from sweep.report import parse_report_spec, plan_report
    >>> spec = parse_report_spec("name: demo\\nhosts: [{name: h, pcpus: 8}]\\n"
    ...     "vms: [{guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]\\n"
    ...     "max_vms: 3\\nslo: {throughput: 0.8}\\nbase: {iterations: 2, pages: 16}\\n")
    >>> plan = plan_report(spec, "2025-W14")
    >>> plan.sweep_name, [ladder.flush_mode for ladder in plan.ladders], plan.max_runs
    ('report.demo.2025-W14', ['native', 'hyperv-pv'], 6)
"""

from sweep.report._analysis import Analysis, Capacity, HazardRow, analyse
from sweep.report._build import ReportOutcome, make_report
from sweep.report._capacity import failover_vms, n_plus_one_vms, next_rung, vms_limit
from sweep.report._ladder import LadderState, evaluate
from sweep.report._period import PERIOD_KINDS, period_key, today_utc
from sweep.report._plan import Ladder, ReportPlan, plan_report, sweep_name_for
from sweep.report._publish import AlreadyPublished, ReportShelf
from sweep.report._schedule import SCHEDULE_KINDS, ScheduleOptions, render_schedule
from sweep.report._search import SearchFindings, search_findings
from sweep.report._slo import Alone, Rung, Verdict, judge
from sweep.report._spec import HostShape, ReportSpec, Slo, VmShape, load_report_spec, parse_report_spec
from sweep.report._why import PvLoss, pv_losses

__all__ = [
    "Alone",
    "AlreadyPublished",
    "Analysis",
    "Capacity",
    "HazardRow",
    "HostShape",
    "Ladder",
    "LadderState",
    "PERIOD_KINDS",
    "PvLoss",
    "ReportOutcome",
    "ReportPlan",
    "ReportShelf",
    "ReportSpec",
    "Rung",
    "SCHEDULE_KINDS",
    "ScheduleOptions",
    "SearchFindings",
    "Slo",
    "Verdict",
    "VmShape",
    "analyse",
    "evaluate",
    "failover_vms",
    "judge",
    "load_report_spec",
    "make_report",
    "n_plus_one_vms",
    "next_rung",
    "parse_report_spec",
    "period_key",
    "plan_report",
    "pv_losses",
    "render_schedule",
    "search_findings",
    "sweep_name_for",
    "today_utc",
    "vms_limit",
]
