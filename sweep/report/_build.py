"""Making a report: plan, run what is missing through the sweep engine, analyse, publish once per period.

The phases, in order:

1. ``published?``  a report of this name for this period exists -> done, nothing runs (unless ``force``);
2. ``plan``        report spec -> generated sweep spec -> expansion (``_plan``);
3. ``run``         ``start_sweep`` + ``execute_sweep``: runs already in the store are reused;
4. ``analyse``     result rows -> benefit, ratios, hazards; the Optuna study if one is named;
5. ``publish``     under the shelf lock: record, figures, HTML, text (and PDF), one rename; index.html.

A session that does not finish every run publishes nothing, so the period stays
open and the next attempt (or ``flushsweep resume report.<name>.<period>``, then
the report again) completes it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal

from sweep._controller import RunOptions, SweepReport
from sweep._executor import Executor
from sweep._progress import Progress
from sweep._service import execute_sweep, start_sweep
from sweep.report._analysis import Analysis, analyse
from sweep.report._figures import draw_figures, write_pdf
from sweep.report._html import render_html
from sweep.report._period import period_key as period_key_of
from sweep.report._plan import ReportPlan, plan_report
from sweep.report._provenance import build_record, changes_since
from sweep.report._publish import HTML_FILE, PDF_FILE, RECORD_FILE, SUMMARY_FILE, AlreadyPublished, ReportShelf
from sweep.report._search import SearchFindings, search_findings
from sweep.report._spec import ReportSpec
from sweep.report._text import summary_text

Status = Literal["published", "already-published", "incomplete"]


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """How ``make_report`` ended.

    ``status``: ``published`` (``path`` is the new report), ``already-published``
    (``path`` is the existing one, nothing ran), or ``incomplete`` (runs failed
    or the session was interrupted; nothing published).
    ``summary``: the plain-text summary (the stored one when already published).
    """

    status: Status
    period_key: str
    path: Any
    summary: str
    sweep: SweepReport | None = None
    record: dict[str, Any] | None = None


def make_report(
    store: Any,
    spec: ReportSpec,
    *,
    day: dt.date,
    executor: Executor | Callable[[], Executor],
    force: bool = False,
    pdf: bool = False,
    study: str | None = None,
    options: RunOptions = RunOptions(),
    progress: Progress | None = None,
    on_start: Callable[[Executor], None] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> ReportOutcome:
    """Make (or skip) the report of ``spec`` for the period containing ``day``.

    Args:
        store: an open, writable ResultStore (its directory holds the published reports).
        executor: an Executor or a factory called only when runs are missing (so a
            report whose runs are all stored never starts Ray).
        force: publish again even if the period has a report.
        study: Optuna study for the search section (default: the spec's ``search.study``).
        log: one-line progress notes (the CLI sends them to stderr).

    Returns:
        A ReportOutcome; see its docstring.

    Raises:
        SpecError: the report spec cannot be planned (a VM size no host can take).
        StoreError: the store cannot be read or written.

    Example:
        >>> with open_store("flushsweep-data") as store:                          # doctest: +SKIP
        ...     outcome = make_report(store, load_report_spec("configs/reports/capacity.yaml"),
        ...                           day=dt.date.today(), executor=InProcessExecutor())
        >>> print(outcome.summary)                                                # doctest: +SKIP
    """
    key = period_key_of(spec.period, day)
    shelf = ReportShelf(store.store_dir)
    existing = shelf.published(spec.name, key)
    if existing is not None and not force:
        return ReportOutcome("already-published", key, existing, shelf.summary(spec.name, key))
    plan = plan_report(spec, key)
    log(f"{spec.name} {key}: {plan.describe()}")
    start_sweep(store, plan.sweep_spec, plan.expansion, kind="report")
    session = execute_sweep(store, plan.sweep_name, executor, order=[r.run_id for r in plan.expansion.runs],
                            options=options, progress=progress, on_start=on_start)
    if not session.complete:
        text = (f"flushsweep report {spec.name}, period {key}: not published; sweep {plan.sweep_name} is {session.status} "
                f"({session.done} done, {session.failed} failed, {session.remaining} remaining); run the report again "
                f"(or flushsweep resume {plan.sweep_name}) to finish it\n")
        return ReportOutcome("incomplete", key, None, text, session)
    analysis = analyse(plan, store.to_pandas(sweep=plan.sweep_name))
    chosen = study if study is not None else spec.study
    findings = search_findings(store.db_url, chosen) if chosen else None
    record = _record(store, plan, analysis, session, findings)
    with shelf.lock():
        if shelf.published(spec.name, key) and not force:  # another process published while this one ran
            return ReportOutcome("already-published", key, shelf.path(spec.name, key), shelf.summary(spec.name, key), session)
        previous = shelf.previous(spec.name, key)
        changes = changes_since(previous, record)
        location = f"published {shelf.path(spec.name, key) / HTML_FILE}"
        summary = summary_text(spec, analysis, record, search=findings, previous=previous, changes=changes, location=location)
        files = _files(spec, analysis, record, findings, previous, changes, summary, pdf=pdf)
        try:
            path = shelf.publish(spec.name, key, files, force=force)
        except AlreadyPublished as exc:  # pragma: no cover - checked under the same lock just above
            return ReportOutcome("already-published", key, exc.path, shelf.summary(spec.name, key), session)
        shelf.write_index()
    return ReportOutcome("published", key, path, summary, session, record)


def _record(store: Any, plan: ReportPlan, analysis: Analysis, session: SweepReport, findings: SearchFindings | None) -> dict[str, Any]:
    from workers import load_profile

    sweep_record = store.find_sweep(plan.sweep_name)
    versions = {s.name: s.code_version for s in store.sweeps()}
    computing = sorted({str(s) for s in analysis.rows.get("sweep", [])})
    return build_record(
        plan, analysis, sweep_record=sweep_record, computing_sweeps={s: versions.get(s, "?") for s in computing},
        computed=session.done, reused=session.skipped, failed=session.failed,
        profile_digest=load_profile(plan.spec.profile).digest(), search=findings,
        generated_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    )


def _files(spec: ReportSpec, analysis: Analysis, record: dict[str, Any], findings: SearchFindings | None,
           previous: dict[str, Any] | None, changes: list[str], summary: str, *, pdf: bool) -> dict[str, bytes]:
    figures = draw_figures(spec, analysis, findings)
    html = render_html(spec, analysis, {**record, "figures": [f.name for f in figures]}, figures,
                       search=findings, previous=previous, changes=changes)
    files = {f"figures/{f.name}.png": f.png for f in figures}
    files[HTML_FILE] = html.encode()
    files[SUMMARY_FILE] = summary.encode()
    if pdf:
        buf = io.BytesIO()
        write_pdf(buf, figures, summary)
        files[PDF_FILE] = buf.getvalue()
    files[RECORD_FILE] = json.dumps({**record, "figures": [f.name for f in figures]}, indent=1, sort_keys=True).encode()
    return files


__all__ = ["ReportOutcome", "make_report"]
