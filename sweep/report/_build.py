"""Making a report: plan, run what is missing through the sweep engine, analyse, publish once per period.

The phases, in order:

1. ``published?``  a report of this name for this period exists -> done, nothing runs (unless ``force``);
2. ``plan``        report spec -> ladders (``_plan``);
3. ``climb``       rounds: judge what is stored (``_ladder.evaluate``), register the next rung of every
                   open ladder as the report's sweep (``start_sweep`` extends it), run it (``execute_sweep``:
                   runs already stored are reused), until every ladder missed the SLO or reached ``max_vms``;
4. ``analyse``     result rows -> VMs per host, N+1, PV losses, benefit, hazards; the Optuna study if named;
5. ``publish``     under the shelf lock: record, figures, HTML, text (and PDF), one rename; index.html.

A session that does not finish every run publishes nothing, so the period stays
open and the next attempt (or ``flushsweep resume report.<name>.<period>``, then
the report again) climbs on from the last stored rung. One executor serves
every round, started only when a round has runs to compute.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal

from sweep._controller import RunOptions, SweepReport
from sweep._executor import Completion, Executor
from sweep._progress import Progress
from sweep._service import execute_sweep, start_sweep
from sweep.report._analysis import Analysis, analyse
from sweep.report._ladder import evaluate
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
        executor: an Executor or a factory called once, when the first round has runs to
            compute (so a report whose runs are all stored never starts Ray); every round uses it.
        force: publish again even if the period has a report.
        study: Optuna study for the search section (default: the spec's ``search.study``).
        log: one-line progress notes (the CLI sends them to stderr).

    Returns:
        A ReportOutcome; see its docstring.

    Raises:
        SpecError: the report spec cannot be planned (a VM shape no run can be made of).
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
    executors = _SharedExecutor(executor, on_start)
    try:
        climb = _climb(store, plan, executors, options=options, progress=progress, log=log)
    finally:
        executors.close()
    session = climb.last
    if session is not None and not climb.complete:
        text = (f"flushsweep report {spec.name}, period {key}: not published; sweep {plan.sweep_name} is {session.status} "
                f"({session.done} done, {session.failed} failed, {session.remaining} remaining); run the report again "
                f"(or flushsweep resume {plan.sweep_name}) to finish it\n")
        return ReportOutcome("incomplete", key, None, text, session)
    analysis = analyse(plan, store.to_pandas(sweep=plan.sweep_name))
    chosen = study if study is not None else spec.study
    findings = search_findings(store.db_url, chosen) if chosen else None
    record = _record(store, plan, analysis, climb, findings)
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


@dataclass(frozen=True, slots=True)
class _Climb:
    """How the rounds went: the last round's session, and what all rounds computed."""

    last: SweepReport | None
    computed: int
    failed: int
    rounds: int

    @property
    def complete(self) -> bool:
        return self.last is None or self.last.complete


def _climb(store: Any, plan: ReportPlan, executors: "_SharedExecutor", *, options: RunOptions,
           progress: Progress | None, log: Callable[[str], None]) -> _Climb:
    """Run the next rung of every open ladder, round after round, until none is open (or a round is incomplete)."""
    spec = plan.spec
    computed = failed = rounds = 0
    last: SweepReport | None = None
    asked: set[tuple[str, int]] = set()
    while True:
        rows = store.to_pandas(sweep=plan.sweep_name) if store.find_sweep(plan.sweep_name) is not None else _no_rows()
        todo = [(s.ladder, s.next_vms) for s in evaluate(plan, rows) if s.next_vms is not None]
        if not todo:
            return _Climb(last, computed, failed, rounds)
        wanted = {(ladder.key, vms) for ladder, vms in todo}
        if wanted <= asked:  # a round whose runs all finished must move every ladder on
            raise RuntimeError(f"report {spec.name}: rungs {sorted(wanted)[:3]} ran but are not found in the store")
        asked |= wanted
        rounds += 1
        sweep_spec, expansion = plan.rungs(todo)
        counts = sorted({vms for _, vms in todo})
        log(f"{spec.name} {plan.period_key}: round {rounds}: vms = {', '.join(map(str, counts))} for {len(todo)} ladder(s), "
            f"{len(expansion.runs)} runs")
        start_sweep(store, sweep_spec, expansion, kind="report")
        last = execute_sweep(store, plan.sweep_name, executors.lend, order=[r.run_id for r in expansion.runs],
                             options=options, progress=progress)
        computed += last.done
        failed += last.failed
        if not last.complete:
            return _Climb(last, computed, failed, rounds)


def _no_rows() -> Any:
    import pandas as pd

    return pd.DataFrame({"run_id": pd.Series([], dtype=str)})


class _SharedExecutor:
    """One executor for every round: made on first need (Ray starts once), closed by the report, not by a round."""

    def __init__(self, given: Executor | Callable[[], Executor], on_start: Callable[[Executor], None] | None) -> None:
        self._given = given
        self._on_start = on_start
        self._made: Executor | None = None

    def lend(self) -> Executor:
        """The executor for one round, as an ``execute_sweep`` factory: closing the loan keeps it open."""
        if self._made is None:
            self._made = self._given if isinstance(self._given, Executor) else self._given()
            if self._on_start is not None:
                self._on_start(self._made)
        return _Loan(self._made)

    def close(self) -> None:
        if self._made is not None and not isinstance(self._given, Executor):
            self._made.close()


class _Loan(Executor):
    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    @property
    def workers(self) -> int:
        return self._inner.workers

    def submit(self, tasks: Any) -> int:
        return self._inner.submit(tasks)

    def wait(self, timeout: float) -> list[Completion]:
        return self._inner.wait(timeout)

    def cancel(self) -> None:
        self._inner.cancel()

    def describe(self) -> str:
        return self._inner.describe()


def _record(store: Any, plan: ReportPlan, analysis: Analysis, climb: _Climb, findings: SearchFindings | None) -> dict[str, Any]:
    from workers import load_profile

    sweep_record = store.find_sweep(plan.sweep_name)
    versions = {s.name: s.code_version for s in store.sweeps()}
    computing = sorted({str(s) for s in analysis.rows.get("sweep", [])})
    return build_record(
        plan, analysis, sweep_record=sweep_record, computing_sweeps={s: versions.get(s, "?") for s in computing},
        computed=climb.computed, reused=max(0, analysis.runs - climb.computed), failed=climb.failed, rounds=climb.rounds,
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
