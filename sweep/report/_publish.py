"""Published reports under the store: ``<store>/reports/<name>/<period>/`` and an ``index.html``.

A report is published at most once per (name, period): the directory appears
by one rename of a fully written staging directory, under a lock, so a
schedule that fires twice (or two hosts racing) publishes once and a reader
never sees half a report. ``force`` replaces the period's report, again by
rename, so the old one stays readable until the new one is in place.

Layout::

    reports/index.html
    reports/capacity/2025-W14/report.html    (self-contained: figures embedded)
                              summary.txt    (the plain-text summary)
                              report.json    (the record the next report diffs against)
                              figures/*.png
                              report.pdf     (with --pdf)
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping

from storage.locking import exclusive_lock

REPORTS_DIR = "reports"
RECORD_FILE = "report.json"
HTML_FILE = "report.html"
SUMMARY_FILE = "summary.txt"
PDF_FILE = "report.pdf"
INDEX_FILE = "index.html"


class AlreadyPublished(RuntimeError):
    """The period already has a report of this name; pass force to replace it."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"already published: {path}")
        self.path = path


class ReportShelf:
    """The reports of one store.

    Args:
        store_dir: the store directory; reports go under ``store_dir/reports``.
    """

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.root = Path(store_dir) / REPORTS_DIR

    def path(self, name: str, period_key: str) -> Path:
        return self.root / name / period_key

    def published(self, name: str, period_key: str) -> Path | None:
        """The period's report directory if it is published (its record is the last file renamed in)."""
        path = self.path(name, period_key)
        return path if (path / RECORD_FILE).is_file() else None

    def record(self, name: str, period_key: str) -> dict[str, Any] | None:
        path = self.published(name, period_key)
        return _read_json(path / RECORD_FILE) if path else None

    def summary(self, name: str, period_key: str) -> str:
        path = self.published(name, period_key)
        try:
            return (path / SUMMARY_FILE).read_text(encoding="utf-8") if path else ""
        except OSError:
            return ""

    def records(self) -> list[dict[str, Any]]:
        """Every published report's record, newest first."""
        out = []
        if self.root.is_dir():
            for record_file in self.root.glob(f"*/*/{RECORD_FILE}"):
                if any(part.startswith(".") for part in record_file.relative_to(self.root).parts):
                    continue  # a staging or replaced directory, not a published report
                record = _read_json(record_file)
                if record is not None:
                    out.append(record)
        return sorted(out, key=lambda r: (str(r.get("generated_at", "")), str(r.get("period_key", ""))), reverse=True)

    def previous(self, name: str, period_key: str) -> dict[str, Any] | None:
        """The report of ``name`` for the latest period before ``period_key`` (what "changes since" compares with).

        Keys of one period kind sort in time order; when the kind changed, the
        most recently generated report of another period is used instead.
        """
        others = [r for r in self.records() if r.get("name") == name and r.get("period_key") != period_key]
        earlier = [r for r in others if _same_shape(str(r.get("period_key")), period_key) and str(r.get("period_key")) < period_key]
        if earlier:
            return max(earlier, key=lambda r: str(r.get("period_key")))
        later_kind = [r for r in others if not _same_shape(str(r.get("period_key")), period_key)]
        return later_kind[0] if later_kind else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes on this host and on shared file systems with POSIX locks (NFSv4)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / ".lock"):
            yield

    def publish(self, name: str, period_key: str, files: Mapping[str, bytes], *, force: bool = False) -> Path:
        """Write ``files`` (relative path -> bytes) as the period's report; call under ``lock()``.

        The record (``report.json``) is written last inside the staging directory,
        and the directory is renamed into place, so ``published()`` is true only
        for a complete report.

        Raises:
            AlreadyPublished: the period has a report and ``force`` is false.
        """
        target = self.path(name, period_key)
        if self.published(name, period_key) and not force:
            raise AlreadyPublished(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in [*target.parent.glob(".staging-*"), *target.parent.glob(".replaced-*")]:
            shutil.rmtree(stale, ignore_errors=True)  # left by a publisher that died; publishing holds the lock
        staging = target.parent / f".staging-{period_key}-{uuid.uuid4().hex[:8]}"
        try:
            ordered = sorted(files.items(), key=lambda kv: kv[0] == RECORD_FILE)
            for rel, data in ordered:
                _write(staging / rel, data)
            replaced = None
            if target.exists():  # forced, or a leftover without a record
                replaced = target.parent / f".replaced-{period_key}-{uuid.uuid4().hex[:8]}"
                target.rename(replaced)
            staging.rename(target)
            _fsync_dir(target.parent)
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def write_index(self) -> Path:
        """Rewrite ``index.html`` from the published records (atomically)."""
        path = self.root / INDEX_FILE
        tmp = self.root / f".{INDEX_FILE}.{uuid.uuid4().hex[:8]}"
        _write(tmp, render_index(self.records(), self.root).encode())
        tmp.replace(path)
        return path


def render_index(records: list[dict[str, Any]], root: Path) -> str:
    """The list of published reports, grouped by name, newest first (no scripts, no external files)."""
    esc = html.escape
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_name.setdefault(str(r.get("name")), []).append(r)
    parts = []
    for name in sorted(by_name):
        rows = []
        for r in by_name[name]:
            rel = f"{esc(name)}/{esc(str(r.get('period_key')))}"
            pdf = f' &middot; <a href="{rel}/{PDF_FILE}">PDF</a>' if (root / name / str(r.get("period_key")) / PDF_FILE).exists() else ""
            runs = r.get("runs") or {}
            hazards = sum(1 for h in r.get("hazards") or [] if h.get("crashes_without_pv"))
            rows.append(
                f"<tr><td><a href=\"{rel}/{HTML_FILE}\">{esc(str(r.get('period_key')))}</a>{pdf}</td>"
                f"<td>{esc(str(r.get('generated_at')))}</td><td>{esc(str(r.get('slo')))}</td>"
                f"<td>{runs.get('measured', runs.get('planned', '-'))}</td><td>{runs.get('computed', '-')}</td><td>{hazards}</td>"
                f"<td><code>{esc(str(r.get('code_version')))}</code></td></tr>"
            )
        description = esc(str(by_name[name][0].get("description") or ""))
        parts.append(
            f"<h2>{esc(name)}</h2><p>{description}</p><table><thead><tr><th>period</th><th>generated (UTC)</th><th>SLO</th>"
            f"<th>runs</th><th>computed</th><th>boot-crash shapes</th><th>code</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    body = "".join(parts) or "<p>No reports published yet: <code>flushsweep report configs/reports/capacity.yaml</code>.</p>"
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>flushsweep reports</title>"
        "<link rel=\"icon\" href=\"data:,\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<style>{INDEX_CSS}</style></head><body><h1>flushsweep reports</h1>{body}</body></html>\n"
    )


INDEX_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}th{background:#f3f3f3}"
)


def _same_shape(a: str, b: str) -> bool:
    """Period keys of the same kind: 2025-04-03 / 2025-W14 / 2025-04."""
    return len(a) == len(b) and ("W" in a) == ("W" in b)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["AlreadyPublished", "ReportShelf", "render_index"]
