"""`flushsweep report`: a small capacity report, run through the sweep engine, published once per period.

The report is made once per module (fresh interpreter, in-process executor, a
real SQLite store) and inspected by several tests; tests that publish again
work on a copy of that store. The HTML is opened in a real headless Chromium
(Debian's ``chromium``) driven over the DevTools protocol.
"""

from __future__ import annotations

import base64
import datetime as dt
import html.parser
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sweep_fixtures import flushsweep, profile_dir  # noqa: F401 - fixtures

SMALL = """\
name: small
description: a small capacity report for the tests
period: weekly
hosts:
  - {name: h8, pcpus: 8}
  - {name: h36, pcpus: 36}
vms:
  - {name: win, guest_os: windows-2016, vcpus: [4, 8], topologies: [smt2, flat]}
  - {name: winbig, guest_os: windows-2016, vcpus: 72, topologies: [smt2, flat]}
workloads: [mmap-munmap]
flush_modes: [native, hyperv-pv]
overcommit: [1, 2, 4]
base: {iterations: 3, pages: 64}
replicates: 2
slo: {metric: lat_p99_us, max: 100}
pool: {hosts: 4}
"""
TINY = """\
name: tiny
period: weekly
hosts: [{name: h4, pcpus: 4}]
vms: [{name: win, guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]
overcommit: [1, 2]
base: {iterations: 2, pages: 16, profile: PROFILE}
slo: {metric: lat_p99_us, max: 100}
"""
DAY = dt.date(2025, 4, 2)  # a Wednesday of ISO week 2025-W14 (Mar 31 .. Apr 6)
WEEK = "2025-W14"
CI = os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class Published:
    spec: Path
    store: Path
    result: subprocess.CompletedProcess
    dir: Path
    record: dict[str, Any]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("report")
    spec = root / "small.yaml"
    spec.write_text(SMALL)
    store = root / "store"
    result = flushsweep("report", str(spec), "--store", str(store), "--in-process", "--date", DAY.isoformat(), "--pdf",
                        "--progress", "none")
    assert result.returncode == 0, result.stderr
    report_dir = store / "reports" / "small" / WEEK
    return Published(spec, store, result, report_dir, json.loads((report_dir / "report.json").read_text()))


# --- what is published ---------------------------------------------------------------------


def test_report_publishes_html_figures_pdf_and_prints_the_summary(published: Published) -> None:
    from sweep.report import load_report_spec, plan_report
    from storage import open_store

    d, record = published.dir, published.record
    assert published.result.stdout == (d / "summary.txt").read_text()  # the cron mail is the stored summary
    assert published.result.stdout.splitlines()[0].endswith(f"published {d / 'report.html'}")
    plan = plan_report(load_report_spec(published.spec), WEEK)
    assert record["runs"] == {"planned": len(plan.expansion.runs), "computed": len(plan.expansion.runs), "reused": 0,
                              "failed": 0, "missing": 0}
    assert f"runs: {len(plan.expansion.runs)} planned, {len(plan.expansion.runs)} computed now" in published.result.stdout
    with open_store(published.store, readonly=True) as store:
        sweep = store.find_sweep(plan.sweep_name)
        assert sweep is not None and sweep.kind == "report" and sweep.status == "done"
        assert record["sweeps"] == {plan.sweep_name: sweep.code_version}
        assert store.results(sweep=plan.sweep_name).num_rows == len(plan.expansion.runs)

    page = (d / "report.html").read_text()
    assert set(record["figures"]) >= {"benefit-real", "benefit-sys", "benefit-p99", "consolidation", "slo-curves"}
    for name in record["figures"]:
        png = (d / "figures" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert base64.b64encode(png).decode() in page  # the same figure, embedded
    refs = _references(page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if not r.startswith(("data:", "#"))]
    pdf = (d / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= len(record["figures"]) + 1
    index = (published.store / "reports" / "index.html").read_text()
    assert f'href="small/{WEEK}/report.html"' in index and f'href="small/{WEEK}/report.pdf"' in index


def test_consolidation_ratios_follow_the_slo_from_the_stored_runs(published: Published) -> None:
    """Recompute every ratio from the raw stored rows (worst replicate, prefix rule, linear failover)."""
    import numpy as np

    from storage import open_store

    with open_store(published.store, readonly=True) as store:
        rows = store.to_pandas(sweep=f"report.small.{WEEK}")
    rows["ratio"] = (rows["vcpus"] + rows["background_vcpus"]) / rows["pcpus"]
    hosts = {"h8": 8, "h36": 36}
    limit, n = 100.0, 4
    table = _parse_table(published.result.stdout, "host")
    assert len(published.record["capacity"]) == len(table) * 2  # native and hyperv-pv per shape
    for cap in published.record["capacity"]:
        topology = {"smt2": lambda v: f"{v // 2}x1x2", "flat": lambda v: f"{v}x1x1"}[cap["topology"]](cap["vcpus"])
        mine = rows[(rows["pcpus"] == hosts[cap["host"]]) & (rows["vcpus"] == cap["vcpus"]) & (rows["topology"] == topology)
                    & (rows["flush_mode"] == cap["flush_mode"])]
        ratios, worst = [], []
        for ratio, at in sorted(mine.groupby("ratio"), key=lambda kv: kv[0]):
            ratios.append(ratio)
            worst.append(np.inf if (at["outcome"] != "ok").any() else at["lat_p99_us"].max())
        ok = [w <= limit for w in worst]
        expected = None
        for r, good in zip(ratios, ok):
            if not good:
                break
            expected = r
        assert cap["max_ratio"] == expected, cap
        safe = None
        for r, good in zip(ratios, ok):
            x = r * n / (n - 1)
            if not good or x > max(ratios) or any(np.isinf(worst)) or np.interp(x, ratios, worst) > limit:
                break
            safe = r
        assert cap["failover_safe"] == safe, cap
        row = next(t for t in table if (t["host"], t["vm"], t["vcpus"], t["topology"]) == (cap["host"], cap["vm"], str(cap["vcpus"]), cap["topology"]))
        shown = "crash" if cap["crashed"] else ("-" if expected is None else f"{expected:g}" + ("+" if expected == max(ratios) else ""))
        assert row[cap["flush_mode"]] == shown


def test_the_windows_hazard_lists_the_shapes_the_engine_crashes_without_pv_flush(published: Published) -> None:
    from workers import RunConfig, boot_crash

    hazards = published.record["hazards"]
    assert {h["topology"] for h in hazards} == {"smt2", "flat"} and all(h["vcpus"] == 72 for h in hazards)
    for h in hazards:
        native = RunConfig(vcpus=72, topology=h["resolved"], guest_os="windows-2016", enlightenments=True, flush_mode="native")
        assert (h["outcomes"]["native"] != "ok") == bool(boot_crash(native)) == h["crashes_without_pv"]
        if h["crashes_without_pv"]:
            assert h["outcomes"]["native"] == boot_crash(native)
        assert h["outcomes"]["hyperv-pv"] == "ok"
    crashing = [h for h in hazards if h["crashes_without_pv"]]
    assert [h["topology"] for h in crashing] == ["smt2"]  # flat: Windows boots on 64 of the 72 vCPUs
    assert f"{len(crashing)} of {len(hazards)} shapes above 64 vCPUs crash at boot without PV flush" in published.result.stdout


# --- in a real browser --------------------------------------------------------------------------


def test_the_report_renders_every_figure_in_headless_chromium_without_console_errors(published: Published, tmp_path: Path) -> None:
    binary = _browser_or_skip()
    with Chromium(binary, tmp_path) as browser:
        page = browser.open((published.dir / "report.html").as_uri())
        figures = page.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().then("
            "() => ({name: i.dataset.figure, w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}),"
            " e => ({name: i.dataset.figure, error: String(e)}))))"
        )
        shot = page.screenshot()
        errors = page.errors()
        index = browser.open((published.store / "reports" / "index.html").as_uri())
        links = index.evaluate("Array.from(document.links).map(a => a.getAttribute('href'))")
        index_errors = index.errors()
    (tmp_path / "report.png").write_bytes(shot)
    shutil.copy(tmp_path / "report.png", "/tmp/flushsweep-report.png")  # for a human to look at
    assert errors == [] and index_errors == []
    assert sorted(f["name"] for f in figures) == sorted(published.record["figures"])
    for f in figures:
        assert "error" not in f, f
        width, height = _png_size(published.dir / "figures" / f"{f['name']}.png")
        assert (f["w"], f["h"]) == (width, height) and f["shown"] > 100, f
    assert shot.startswith(b"\x89PNG") and _png_size_bytes(shot)[1] > 2000  # the whole page, not one screen
    assert f"small/{WEEK}/report.html" in links


# --- once per period ---------------------------------------------------------------------------


def test_a_second_run_in_the_period_publishes_nothing_force_redoes_it_and_next_week_diffs(published: Published, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(published.store, store)
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    week_dir = store / "reports" / "small" / WEEK
    before = _snapshot(store / "reports")

    again = flushsweep("report", str(spec), "--store", str(store), "--date", "2025-04-06", "--progress", "none")
    assert again.returncode == 0, again.stderr
    assert "already published" in again.stderr and "--force" in again.stderr
    assert again.stdout == (week_dir / "summary.txt").read_text()
    assert _snapshot(store / "reports") == before  # not one file rewritten
    assert "running on" not in again.stderr  # no executor, no Ray started

    forced = flushsweep("report", str(spec), "--store", str(store), "--date", "2025-04-06", "--force", "--in-process", "--progress", "none")
    assert forced.returncode == 0, forced.stderr
    record = json.loads((week_dir / "report.json").read_text())
    planned = published.record["runs"]["planned"]
    assert record["runs"]["computed"] == 0 and record["runs"]["reused"] == planned  # everything reused
    assert _snapshot(store / "reports") != before
    assert sorted(p.name for p in week_dir.parent.iterdir()) == [WEEK]  # replaced in place, no leftovers

    spec.write_text(SMALL.replace("max: 100", "max: 150"))
    nxt = flushsweep("report", str(spec), "--store", str(store), "--date", "2025-04-09", "--in-process", "--progress", "none")
    assert nxt.returncode == 0, nxt.stderr
    assert f"{planned} planned, 0 computed now, {planned} reused" in nxt.stdout
    assert f"changes since {WEEK}:" in nxt.stdout
    assert "SLO lat_p99_us <= 100 us (worst replicate) -> lat_p99_us <= 150 us (worst replicate)" in nxt.stdout
    assert "report spec changed" in nxt.stdout
    index = (store / "reports" / "index.html").read_text()
    assert 'href="small/2025-W15/report.html"' in index and f'href="small/{WEEK}/report.html"' in index


def test_a_report_whose_runs_fail_publishes_nothing_and_the_next_attempt_does(tmp_path: Path, profile_dir: Path) -> None:
    from sweep import InProcessExecutor
    from sweep.report import ReportShelf, make_report, parse_report_spec
    from storage import open_store

    spec = parse_report_spec(TINY.replace("PROFILE", "flaky"), source="tiny.yaml")
    profile = profile_dir / "flaky.yaml"
    with open_store(tmp_path / "store") as store:
        outcome = make_report(store, spec, day=DAY, executor=InProcessExecutor,
                              on_start=lambda ex: profile.rename(profile.with_suffix(".off")))  # runs fail in the worker
        assert outcome.status == "incomplete" and "not published" in outcome.summary
        assert outcome.sweep is not None and outcome.sweep.failed == 4
        assert ReportShelf(store.store_dir).published("tiny", WEEK) is None
        assert not (store.store_dir / "reports" / "tiny").exists()

        profile.with_suffix(".off").rename(profile)
        outcome = make_report(store, spec, day=DAY, executor=InProcessExecutor)
        assert outcome.status == "published"
        assert outcome.record is not None and outcome.record["runs"]["computed"] == 4 and outcome.record["runs"]["failed"] == 0


# --- search findings -----------------------------------------------------------------------------


def test_search_findings_come_from_the_named_optuna_study_in_the_stores_database(tmp_path: Path) -> None:
    import optuna

    from sweep import InProcessExecutor
    from sweep.report import make_report, parse_report_spec
    from storage import open_store

    spec = parse_report_spec(TINY.replace("PROFILE", "literature"), source="tiny.yaml")
    with open_store(tmp_path / "store") as store:
        study = optuna.create_study(study_name="capacity-search", storage=store.db_url, direction="minimize",
                                    sampler=optuna.samplers.RandomSampler(seed=3))
        study.optimize(lambda t: t.suggest_int("vcpus", 4, 64, log=True) * 0.1 + t.suggest_float("overcommit", 1, 4) ** 2
                       + (1.0 if t.suggest_categorical("topology", ["smt2", "flat"]) == "flat" else 0.0), n_trials=16)
        found = make_report(store, spec, day=DAY, executor=InProcessExecutor, study="capacity-search")
        missing = make_report(store, spec, day=DAY + dt.timedelta(days=7), executor=InProcessExecutor, study="no-such-study")
        none = make_report(store, spec, day=DAY + dt.timedelta(days=14), executor=InProcessExecutor)

    assert found.status == "published" and found.record is not None
    best = study.best_trial
    assert found.record["search"]["completed"] == 16
    assert found.record["search"]["best"][0]["number"] == best.number
    assert f"best trial #{best.number}: {best.value:.4g}" in found.summary
    assert "importances: " in found.summary and "top region: " in found.summary
    page = (found.path / "report.html").read_text()
    assert 'id="search"' in page and (found.path / "figures" / "search-importances.png").is_file()

    assert missing.status == "published" and "no Optuna study 'no-such-study'" in missing.summary
    assert none.status == "published" and none.record is not None and none.record["search"] is None
    assert 'id="search"' not in (none.path / "report.html").read_text()


def test_a_throughput_slo_is_judged_against_the_same_vm_without_overcommit(tmp_path: Path) -> None:
    from sweep import InProcessExecutor
    from sweep.report import make_report, parse_report_spec
    from storage import open_store

    text = (TINY.replace("PROFILE", "literature").replace("vcpus: [4]", "vcpus: [4, 8]").replace("overcommit: [1, 2]", "overcommit: [1, 2, 4]")
            .replace("metric: lat_p99_us, max: 100", "metric: throughput_loss, max: 0.92"))
    spec = parse_report_spec(text, source="tiny.yaml")
    with open_store(tmp_path / "store") as store:
        outcome = make_report(store, spec, day=DAY, executor=InProcessExecutor)
        rows = store.to_pandas(sweep=f"report.tiny.{WEEK}")
    assert outcome.record is not None
    caps = {(c["vcpus"], c["flush_mode"]): c for c in outcome.record["capacity"]}
    for mode in ("native", "hyperv-pv"):
        mine = rows[(rows["vcpus"] == 4) & (rows["flush_mode"] == mode)]
        ratio = (mine["vcpus"] + mine["background_vcpus"]) / mine["pcpus"]
        reference = mine[ratio == 1.0]["ops_per_s"].mean()
        expected = None
        for r in sorted(set(ratio)):
            if 1 - mine[ratio == r]["ops_per_s"].min() / reference > 0.92:
                break
            expected = r
        assert caps[(4, mode)]["max_ratio"] == expected
        # 8 vCPUs do not fit a 4-pCPU host without overcommit: no reference, no ratio
        assert caps[(8, mode)]["max_ratio"] is None
    assert "no reference at ratio 1 (VM larger than host)" in outcome.summary


@pytest.mark.postgres
def test_a_report_on_postgresql_reads_its_study_from_the_same_database(tmp_path: Path, pg_url: str) -> None:
    import optuna

    from sweep import InProcessExecutor
    from sweep.report import ReportShelf, make_report, parse_report_spec
    from storage import open_store

    spec = parse_report_spec(TINY.replace("PROFILE", "literature") + "search: {study: pg-search}\n", source="tiny.yaml")
    with open_store(tmp_path / "store", pg_url) as store:
        study = optuna.create_study(study_name="pg-search", storage=store.db_url, direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=5))
        study.optimize(lambda t: -abs(t.suggest_float("overcommit", 1, 4) - 2.5), n_trials=6)
        first = make_report(store, spec, day=DAY, executor=InProcessExecutor)
        second = make_report(store, spec, day=DAY, executor=InProcessExecutor)
    assert first.status == "published" and second.status == "already-published"
    assert first.record is not None and first.record["search"]["best"][0]["number"] == study.best_trial.number
    with open_store(tmp_path / "store", pg_url, readonly=True) as store:  # the report's runs are in PostgreSQL
        assert len(store.runs(f"report.tiny.{WEEK}", status="done")) == first.record["runs"]["planned"] == 4
    assert ReportShelf(tmp_path / "store").published("tiny", WEEK) == first.path == second.path


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("overcommit: [1, 2]", "overcommit: [1, 2]\nflavour: x", "tiny.yaml:6: flavour: unknown key"),
        ("base: {", "base: {pcpus: 4, ", "tiny.yaml:6: base.pcpus: pcpus is set by the report's hosts"),
        ("vcpus: [4]", "vcpus: [5]", "tiny.yaml:4: vms[0].topologies[0]: smt2 needs an even vcpus, got 5"),
        ("vcpus: [4]", "vcpus: [4, 16]", "tiny.yaml:4: vms[0].vcpus[1]: 16 vCPUs fit no host at the listed ratios"),
        ("max: 100", "max: 100, max: 5", "tiny.yaml:7: slo.max: duplicate key"),
        ("overcommit: [1, 2]\nbase", "overcommit: [2, 4]\nbase", None),
        ("pages: 16", "pages: 0", "tiny.yaml:6: base.pages: must be >= 1, got 0"),
        ("profile: literature", "profile: nosuch", "tiny.yaml:6: base.profile: no calibration profile 'nosuch'"),
        ("period: weekly", "period: hourly", "tiny.yaml:2: period: 'hourly' is not one of daily, weekly, monthly"),
    ],
)
def test_a_bad_report_spec_is_one_line_naming_the_line_and_field_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, old: str, new: str, message: str | None
) -> None:
    from sweep.cli import main

    text = TINY.replace("PROFILE", "literature")
    assert old in text
    text = text.replace(old, new)
    if message is None:  # a throughput SLO needs the no-overcommit reference
        text = text.replace("metric: lat_p99_us, max: 100", "metric: throughput_loss, max: 0.1")
        message = "tiny.yaml:5: overcommit: throughput_loss is measured against no overcommit; add 1 to overcommit"
    (tmp_path / "tiny.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "tiny.yaml", "--store", str(tmp_path / "store"), "--in-process"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flushsweep report: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "store").exists()


def test_dry_run_prints_the_plan_and_touches_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.cli import main

    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    assert main(["report", str(spec), "--dry-run", "--date", "2025-12-29", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "report small, period 2026-W01 (weekly): sweep report.small.2026-W01"
    assert "SLO: lat_p99_us <= 100 us (worst replicate); pool of 4 hosts" in out
    assert not (tmp_path / "store").exists()


# --- the default path: Ray --------------------------------------------------------------------------


@pytest.mark.ray
def test_the_cli_runs_a_reports_missing_runs_on_ray_by_default(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("PROFILE", "literature"))
    result = flushsweep("report", str(spec), "--store", str(tmp_path / "store"), "--workers", "2", "--date", DAY.isoformat(),
                        "--progress", "none", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tiny: running on embedded local Ray" in result.stderr
    assert "runs: 4 planned, 4 computed now, 0 reused" in result.stdout
    assert (tmp_path / "store" / "reports" / "tiny" / WEEK / "report.html").is_file()


# --- helpers --------------------------------------------------------------------------------------


def _references(page: str) -> list[str]:
    """Every src/href in the page (a self-contained report has only data: URIs and #anchors)."""
    refs: list[str] = []

    class Collect(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            refs.extend(v or "" for k, v in attrs if k in ("src", "href"))

    Collect().feed(page)
    return refs


def _parse_table(text: str, first: str) -> list[dict[str, str]]:
    """The aligned text table whose header starts with ``first`` (columns are 2+ spaces apart)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(first + " "))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = []
    for ln in lines[start + 2:]:
        if not ln.strip():
            break
        rows.append(dict(zip(header, re.split(r"\s{2,}", ln.strip()))))
    return rows


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _png_size(path: Path) -> tuple[int, int]:
    return _png_size_bytes(path.read_bytes())


def _png_size_bytes(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR width, height


def _browser_or_skip() -> str:
    """Debian's chromium and a websocket client; outside CI a missing one skips, on CI it fails."""
    binary = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    problem = None
    if binary is None:
        problem = "Debian's chromium is not installed (.ci/install-browser.sh installs it)"
    else:
        try:
            import websocket  # noqa: F401 - websocket-client, from the [test] extra
        except ImportError:
            problem = "websocket-client is not installed (pip install -e '.[test]')"
    if problem:
        if CI:
            pytest.fail(f"{problem}; CI=true: the browser test must run")
        pytest.skip(problem)
    return binary  # type: ignore[return-value]


#: Headless, and nothing that reaches the network (this network refuses it; a report needs none).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0")


class Chromium:
    """A headless Chromium with its own profile, driven over the DevTools protocol."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"  # first line: the port it chose
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start: {self.proc.stderr.read().decode(errors='replace')[-1500:]}")  # type: ignore[union-attr]
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def open(self, url: str) -> "DevToolsPage":
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as r:
            target = json.load(r)
        page = DevToolsPage(target["webSocketDebuggerUrl"])
        page.navigate(url)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DevToolsPage:
    """One tab: commands in order, events kept (console messages, exceptions, log entries)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"]["value"]

    def screenshot(self) -> bytes:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) seen so far."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(str(params["entry"].get("text")))
        return out
