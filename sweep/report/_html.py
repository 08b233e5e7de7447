"""The self-contained HTML report: inline CSS, figures as base64 PNG, nothing executable, no external files.

One file can be mailed, archived or opened from a CI artifact and shows the same.
"""

from __future__ import annotations

import base64
import html
import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sweep.report._analysis import Analysis
from sweep.report._figures import RenderedFigure
from sweep.report._search import SearchFindings
from sweep.report._spec import ReportSpec
from sweep.report._tables import capacity_frame, hazard_frame, loss_lines, notes
from sweep.report._text import TABLE_LEGEND, pool_line

if TYPE_CHECKING:
    import pandas

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;padding:1.5em;color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right}figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:60em}.meta{color:#555;font-size:.9em}.crash{color:#b03a2e;font-weight:600}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}pre{background:#f7f7f7;padding:.8em;overflow-x:auto}
ul.changes li{margin:.15em 0}nav a{margin-right:1em}
"""


def render_html(
    spec: ReportSpec,
    analysis: Analysis,
    record: Mapping[str, Any],
    figures: Sequence[RenderedFigure],
    *,
    search: SearchFindings | None,
    previous: Mapping[str, Any] | None,
    changes: Sequence[str],
) -> str:
    esc = html.escape
    by_name = {f.name: f for f in figures}
    runs = record["runs"]
    n = spec.pool_hosts
    parts = [
        f"<h1>{esc(spec.name)}: capacity plan, {esc(record['period_key'])}</h1>",
        f"<p class=\"meta\">{esc(spec.description)}</p>" if spec.description else "",
        f"<p class=\"meta\">Generated {esc(record['generated_at'])} UTC &middot; period {esc(spec.period)} &middot; "
        f"SLO {esc(spec.slo.describe())} &middot; pool of {n} hosts &middot; {runs['measured']} runs "
        f"({runs['computed']} computed now, {runs['reused']} reused, {runs['rounds']} rounds)</p>",
        "<nav><a href=\"#consolidation\">VMs per host</a><a href=\"#pv-loses\">Where PV loses</a>"
        "<a href=\"#benefit\">PV benefit</a><a href=\"#hazard\">Windows hazard</a>"
        + ("<a href=\"#search\">Search</a>" if search is not None else "") + "<a href=\"#provenance\">Provenance</a></nav>",
        "<h2 id=\"consolidation\">VMs per host meeting the SLO</h2>",
        f"<p>For each host and VM shape, <code>vms</code> = 1, 2, ... identical VMs share the host until one count misses "
        f"<b>{esc(spec.slo.describe())}</b>; the answer is the largest count that met it, with every smaller count "
        f"meeting it too, without PV flush (native) and with it. One VM alone is the same VM alone on the host under the "
        f"flush mode that serves it best, so every mode is held to the same floor. {esc(pool_line(spec))}.</p>",
        f"<p class=\"meta\">{esc(TABLE_LEGEND)}.</p>",
        _table(capacity_frame(spec, analysis), table_id="capacity"),
        "".join(f"<p class=\"meta\">Note: {esc(line)}</p>" for line in notes(analysis)),
        _figure(by_name.get("consolidation")),
        _figure(by_name.get("slo-curves")),
        "<h2 id=\"pv-loses\">Where PV flush loses</h2>",
        _losses(analysis),
        "<h2 id=\"benefit\">PV benefit</h2>",
        "<p>Each PV run against the native run of the same shape, VM count and seed; geometric mean over replicates.</p>",
        *(_figure(by_name.get(name)) for name in ("benefit-real", "benefit-sys", "benefit-p99")),
        "<h2 id=\"hazard\">Windows &gt;64-vCPU hazard</h2>",
        _hazard(analysis),
    ]
    if search is not None:
        parts += ["<h2 id=\"search\">Search findings</h2>", _search(search), _figure(by_name.get("search-importances"))]
    parts += ["<h2 id=\"provenance\">Provenance</h2>", _provenance(record, previous, changes)]
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(spec.name)} {esc(record['period_key'])}: flushsweep report</title>"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">"
        f"<meta name=\"generator\" content=\"flushsweep {esc(str(record['code_version']))}\">"
        f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _figure(fig: RenderedFigure | None) -> str:
    if fig is None:
        return ""
    data = base64.b64encode(fig.png).decode("ascii")
    width, height = (int(v) for v in fig.figure.get_size_inches() * fig.figure.dpi)
    return (
        f"<figure id=\"fig-{html.escape(fig.name)}\"><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(fig.title)}\" "
        f"width=\"{width}\" height=\"{height}\" data-figure=\"{html.escape(fig.name)}\">"
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )


def _losses(analysis: Analysis) -> str:
    lines = loss_lines(analysis)
    if not lines:
        return "<p id=\"pv-losses\">Nowhere: PV flush fits at least as many VMs per host as native in every shape.</p>"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (f"<p>{len(lines)} shape(s) where PV flush fits fewer VMs per host than native; each sentence compares the "
            f"two at the first VM count PV missed, from the model's counters (per-VM means).</p><ul id=\"pv-losses\">{items}</ul>")


def _table(frame: "pandas.DataFrame", *, table_id: str = "") -> str:
    if frame.empty:
        return "<p>(no rows)</p>"
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for v in values:
            text = str(v)
            cls = " class=\"crash\"" if text == "crash" or text.isupper() else (" class=\"num\"" if _numeric(text) else "")
            cells.append(f"<td{cls}>{esc(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    ident = f" id=\"{esc(table_id)}\"" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("+"))
    except ValueError:
        return False
    return True


def _hazard(analysis: Analysis) -> str:
    if not analysis.hazards:
        return "<p>No Windows VM shape above 64 vCPUs in this report, so the 2018 boot crash cannot occur here.</p>"
    crashing = [h for h in analysis.hazards if h.crashes_without_pv]
    text = (f"<p>{len(crashing)} of {len(analysis.hazards)} Windows Server 2016 shapes above 64 vCPUs crash at boot "
            f"(PAGE_FAULT_IN_NONPAGED_AREA) without PV flush: with more than 64 vCPUs in a non-flat topology and "
            f"enlightenments on, the guest needs HvCallFlushVirtualAddressSpaceEx/ListEx (Hyper-V PV TLB flush). "
            f"A flat topology with more than 64 sockets boots, but Windows uses only 64 vCPUs. Columns per flush mode: "
            f"'boots' or the bugcheck seen at boot.</p>")
    return text + _table(hazard_frame(analysis), table_id="hazard-table")


def _search(search: SearchFindings) -> str:
    esc = html.escape
    if not search.found:
        return f"<p>{esc(search.note)}</p>"
    rows = "".join(
        f"<tr><td class=\"num\">{b['number']}</td><td class=\"num\">{esc(', '.join(f'{v:.4g}' for v in b['values']))}</td>"
        f"<td>{esc(', '.join(f'{k}={v}' for k, v in b['params'].items()))}</td></tr>"
        for b in search.best
    )
    region = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in search.region.items())
    importances = "" if search.importances else "<p class=\"meta\">Parameter importances need more completed trials with varied parameters.</p>"
    return (
        f"<p>Study <code>{esc(search.study)}</code>: {search.completed} completed trials, objective(s) {esc(', '.join(search.directions))}.</p>"
        f"<table><thead><tr><th>trial</th><th>objective</th><th>parameters</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p>Top region (best quarter of the trials):</p><ul>{region}</ul>{importances}"
    )


def _provenance(record: Mapping[str, Any], previous: Mapping[str, Any] | None, changes: Sequence[str]) -> str:
    esc = html.escape
    runs = record["runs"]
    sweeps = "".join(f"<li><code>{esc(k)}</code> (code {esc(str(v))})</li>" for k, v in record["sweeps"].items()) or "<li>none</li>"
    if previous is None:
        changed = "<p>First report of this name.</p>"
    elif changes:
        changed = (f"<p>Changes since {esc(str(previous.get('period_key')))}:</p><ul class=\"changes\">"
                   + "".join(f"<li>{esc(c)}</li>" for c in changes) + "</ul>")
    else:
        changed = f"<p>No changes since {esc(str(previous.get('period_key')))}.</p>"
    packages = ", ".join(f"{k} {v}" for k, v in sorted(record["package_versions"].items()))
    return (
        f"<table id=\"provenance-table\"><tbody>"
        f"<tr><th>report sweep</th><td><code>{esc(record['sweep'])}</code></td></tr>"
        f"<tr><th>runs</th><td>{runs['measured']} measured: {runs['computed']} computed by this report, {runs['reused']} reused "
        f"from the store, {runs['failed']} failed, in {runs['rounds']} rounds of rungs</td></tr>"
        f"<tr><th>code version</th><td><code>{esc(str(record['code_version']))}</code> on {esc(str(record['host']))}</td></tr>"
        f"<tr><th>calibration profile</th><td><code>{esc(record['profile']['name'])}</code> (digest {esc(record['profile']['digest'])})</td></tr>"
        f"<tr><th>report spec</th><td><code>{esc(record['spec_source'])}</code> (hash {esc(record['spec_hash'])})</td></tr>"
        f"<tr><th>packages</th><td>{esc(packages)}</td></tr>"
        f"</tbody></table><p>Sweeps that computed the runs used here:</p><ul>{sweeps}</ul>{changed}"
        f"<details><summary>Report spec</summary><pre>{esc(record['spec_text'])}</pre></details>"
        f"<script type=\"application/json\" id=\"report-record\">{_json_for_html(record)}</script>"
    )


def _json_for_html(record: Mapping[str, Any]) -> str:
    """The record inside a non-executed script element: '</' escaped so it cannot close the element."""
    return json.dumps({k: v for k, v in record.items() if k != "spec_text"}, sort_keys=True).replace("</", "<\\/")


__all__ = ["render_html"]
