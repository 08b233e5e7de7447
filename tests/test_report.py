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
  - {name: h16, pcpus: 16}
vms:
  - {name: win, guest_os: windows-2016, vcpus: [8], topologies: [smt2]}
  - {name: winbig, guest_os: windows-2016, vcpus: 72, topologies: [smt2, flat]}
workloads: [mmap-munmap]
flush_modes: [native, hyperv-pv]
hv_semantics: [kvm-current, kvm-2018]
max_vms: 3
base: {iterations: 2, pages: 2048}
replicates: 2
slo: {throughput: 0.8, lat_p99_us: 400}
pool: {hosts: 3}
"""
TINY = """\
name: tiny
period: weekly
hosts: [{name: h4, pcpus: 4}]
vms: [{name: win, guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]
max_vms: 2
base: {iterations: 2, pages: 16, profile: PROFILE}
slo: {throughput: 0.8}
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
    from storage import open_store
    from sweep.report import load_report_spec, plan_report

    d, record = published.dir, published.record
    assert published.result.stdout == (d / "summary.txt").read_text()  # the cron mail is the stored summary
    assert published.result.stdout.splitlines()[0].endswith(f"published {d / 'report.html'}")
    plan = plan_report(load_report_spec(published.spec), WEEK)
    with open_store(published.store, readonly=True) as store:
        sweep = store.find_sweep(plan.sweep_name)
        assert sweep is not None and sweep.kind == "report" and sweep.status == "done"
        assert record["sweeps"] == {plan.sweep_name: sweep.code_version}
        stored = store.results(sweep=plan.sweep_name).num_rows
        rows = store.to_pandas(sweep=plan.sweep_name)
    rounds = int(rows["vms"].max())  # one round per rung
    assert record["runs"] == {"measured": stored, "computed": stored, "reused": 0, "failed": 0, "rounds": rounds}
    assert f"runs: {stored} measured ({stored} computed now, 0 reused from the store, 0 failed) in {rounds} round(s)" \
        in published.result.stdout

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


#: The columns that tell a ladder apart in the stored rows.
LADDER = ["pcpus", "vcpus", "topology", "hv_semantics", "flush_mode"]
HOSTS = {"h8": 8, "h16": 16}
TOPOLOGY = {"smt2": lambda v: f"{v // 2}x1x2", "flat": lambda v: f"{v}x1x1"}


def _recompute(rows: Any, *, throughput: float, p99: float | None) -> dict[tuple, tuple[int, list[int]]]:
    """Per ladder, from the raw rows and the SLO's definition: (VMs per host, the vms counts that were run)."""
    rungs = {}
    for key, at in rows.groupby([*LADDER, "vms"]):
        crashed = bool((at["outcome"] != "ok").any())
        rungs[key] = (crashed, float(at["ops_per_s_min"].min()), float(at["lat_p99_us"].max()))  # worst replicate
    alone: dict[tuple, float] = {}
    for (pcpus, vcpus, topology, hv, _, vms), (crashed, ops, _) in rungs.items():
        if vms == 1 and not crashed:
            alone[(pcpus, vcpus, topology, hv)] = max(ops, alone.get((pcpus, vcpus, topology, hv), 0.0))
    out = {}
    for ladder in {k[:-1] for k in rungs}:
        ran = sorted(k[-1] for k in rungs if k[:-1] == ladder)
        reference = alone.get(ladder[:-1])
        limit = 0
        for vms in range(1, max(ran) + 1):
            rung = rungs.get((*ladder, vms))
            if rung is None or rung[0] or reference is None or rung[1] < throughput * reference or (p99 is not None and rung[2] > p99):
                break
            limit = vms
        out[ladder] = (limit, ran)
    return out


def test_vms_per_host_follow_the_slo_from_the_stored_runs_and_each_ladder_stops_at_its_first_miss(published: Published) -> None:
    from storage import open_store

    with open_store(published.store, readonly=True) as store:
        rows = store.to_pandas(sweep=f"report.small.{WEEK}")
    expected = _recompute(rows, throughput=0.8, p99=400.0)
    n, cap = 3, 3
    table = _parse_table(published.result.stdout, "host")
    assert len(published.record["capacity"]) == len(expected) == len(table) * 2  # native and hyperv-pv per row
    for cap_entry in published.record["capacity"]:
        key = (HOSTS[cap_entry["host"]], cap_entry["vcpus"], TOPOLOGY[cap_entry["topology"]](cap_entry["vcpus"]),
               cap_entry["hv_semantics"], cap_entry["flush_mode"])
        limit, ran = expected[key]
        assert cap_entry["vms_per_host"] == limit, cap_entry
        assert ran == list(range(1, min(limit + 1, cap) + 1)), (cap_entry, ran)  # up to the first miss or the cap, no more
        assert cap_entry["saturated"] == (limit == cap)
        assert cap_entry["n_plus_one"] == max(k for k in range(limit + 1) if -(-n * k // (n - 1)) <= limit)
        assert cap_entry["host_kvm"] == {"kvm-current": "current", "kvm-2018": "2018"}[cap_entry["hv_semantics"]]
        row = next(t for t in table if (t["host"], t["vm"], t["vcpus"], t["topology"], t["Hyper-V handler"])
                   == (cap_entry["host"], cap_entry["vm"], str(cap_entry["vcpus"]), cap_entry["topology"], cap_entry["hv_semantics"]))
        assert row["KVM"] == cap_entry["host_kvm"]
        mark = "+" if limit == cap else ""
        crashed = cap_entry["crashed"]
        assert row[cap_entry["flush_mode"]] == ("crash" if crashed else f"{limit}{mark}")
        assert row[f"{cap_entry['flush_mode']}, 1 of {n} down"] == ("crash" if crashed else f"{cap_entry['n_plus_one']}{mark}")
    losses = {(x["host"], x["vm"], x["vcpus"], x["topology"], x["hv_semantics"], x["flush_mode"]) for x in published.record["pv_losses"]}
    for c in published.record["capacity"]:
        native = next(o for o in published.record["capacity"] if o["key"] == c["key"].rsplit("/", 1)[0] + "/native")
        shape = (c["host"], c["vm"], c["vcpus"], c["topology"], c["hv_semantics"], c["flush_mode"])
        assert (shape in losses) == (c["flush_mode"] != "native" and c["vms_per_host"] < native["vms_per_host"])
    if losses:
        assert "Where PV flush fits fewer VMs than native" in published.result.stdout
    else:
        assert "Where PV flush loses: nowhere" in published.result.stdout


def test_the_planners_query_gives_the_reports_answers_for_a_throughput_slo(published: Published) -> None:
    from storage import EXAMPLES, open_store

    (example,) = [e for e in EXAMPLES if e.title.startswith("Capacity plan: VMs per host")]
    with open_store(published.store, readonly=True) as store:
        answers = store.sql(example.sql).to_pylist()
        rows = store.to_pandas(sweep=f"report.small.{WEEK}")
    expected = _recompute(rows, throughput=0.8, p99=None)  # the query's SLO, over the rungs the report ran
    assert len(answers) == len(expected) // 2
    for a in answers:
        for mode, column in (("native", "native"), ("hyperv-pv", "hyperv_pv")):
            assert a[column] == expected[(a["pcpus"], a["vcpus"], a["topology"], a["hv_semantics"], mode)][0], a
        assert a["kvm_pv"] is None


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
    crashed = [c for c in published.record["capacity"] if c["crashed"]]
    assert crashed and all(c["flush_mode"] == "native" and c["topology"] == "smt2" and c["vms_per_host"] == 0 for c in crashed)


# --- in a real browser --------------------------------------------------------------------------


def test_the_report_renders_every_figure_and_table_in_headless_chromium_without_console_errors(published: Published, tmp_path: Path) -> None:
    binary = _browser_or_skip()
    with Chromium(binary, tmp_path) as browser:
        page = browser.open((published.dir / "report.html").as_uri())
        figures = page.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().then("
            "() => ({name: i.dataset.figure, w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}),"
            " e => ({name: i.dataset.figure, error: String(e)}))))"
        )
        tables = page.evaluate(
            "(() => { const rows = id => Array.from(document.querySelectorAll(`#${id} tbody tr`));"
            " const shown = id => document.getElementById(id).getBoundingClientRect().height;"
            " return {capacity: rows('capacity').map(r => Array.from(r.cells).map(c => c.textContent)),"
            " headers: Array.from(document.querySelectorAll('#capacity thead th')).map(t => t.textContent),"
            " hazard: rows('hazard-table').length, losses: document.getElementById('pv-losses').textContent,"
            " heights: ['capacity', 'hazard-table', 'pv-losses'].map(shown)}; })()"
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
    record = published.record
    assert tables["headers"][:7] == ["host", "vm", "vcpus", "topology", "workload", "KVM", "Hyper-V handler"]
    assert tables["headers"][7:] == ["native", "hyperv-pv", "native, 1 of 3 down", "hyperv-pv, 1 of 3 down"]
    shown = {(r[0], r[1], r[2], r[3], r[6]): r for r in tables["capacity"]}
    assert len(shown) == len(tables["capacity"]) == len(record["capacity"]) // 2
    for c in record["capacity"]:
        cells = shown[(c["host"], c["vm"], str(c["vcpus"]), c["topology"], c["hv_semantics"])]
        assert cells[5] == c["host_kvm"]
        assert cells[7 if c["flush_mode"] == "native" else 8] == ("crash" if c["crashed"] else
                                                                  f"{c['vms_per_host']}{'+' if c['saturated'] else ''}")
    assert tables["hazard"] == len(record["hazards"]) and all(h > 0 for h in tables["heights"])
    assert all(x["sentence"] in tables["losses"] for x in record["pv_losses"])
    if not record["pv_losses"]:
        assert tables["losses"].startswith("Nowhere")
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
    measured = published.record["runs"]["measured"]
    assert record["runs"]["computed"] == 0 and record["runs"]["reused"] == measured and record["runs"]["rounds"] == 0
    assert record["capacity"] == published.record["capacity"]  # judged again from the same stored rows
    assert _snapshot(store / "reports") != before
    assert sorted(p.name for p in week_dir.parent.iterdir()) == [WEEK]  # replaced in place, no leftovers

    spec.write_text(SMALL.replace("throughput: 0.8", "throughput: 0.9"))  # a stricter SLO needs no rung not run already
    nxt = flushsweep("report", str(spec), "--store", str(store), "--date", "2025-04-09", "--in-process", "--progress", "none")
    assert nxt.returncode == 0, nxt.stderr
    stricter = json.loads((store / "reports" / "small" / "2025-W15" / "report.json").read_text())
    assert stricter["runs"]["computed"] == 0 and stricter["runs"]["reused"] == stricter["runs"]["measured"] <= measured
    before_caps = {c["key"]: c for c in published.record["capacity"]}
    for c in stricter["capacity"]:
        assert c["vms_per_host"] <= before_caps[c["key"]]["vms_per_host"]  # a stricter SLO never fits more VMs
        if c["vms_per_host"] != before_caps[c["key"]]["vms_per_host"]:
            assert f"{c['key']}: VMs per host {before_caps[c['key']]['vms_per_host']}" in nxt.stdout
    assert f"changes since {WEEK}:" in nxt.stdout
    assert ("SLO slowest VM >= 80% of one VM alone (ops/s), shootdown p99 <= 400 us, crash-free (worst replicate) -> "
            "slowest VM >= 90% of one VM alone (ops/s), shootdown p99 <= 400 us, crash-free (worst replicate)") in nxt.stdout
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
        assert outcome.sweep is not None and outcome.sweep.failed == 2  # round 1: vms = 1, native and hyperv-pv
        assert ReportShelf(store.store_dir).published("tiny", WEEK) is None
        assert not (store.store_dir / "reports" / "tiny").exists()

        profile.with_suffix(".off").rename(profile)
        outcome = make_report(store, spec, day=DAY, executor=InProcessExecutor)
        assert outcome.status == "published" and outcome.record is not None
        runs = outcome.record["runs"]
        assert runs["computed"] == runs["measured"] >= 2 and runs["failed"] == 0


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


def test_search_findings_list_each_configuration_once_and_rank_importances_as_the_data_do(tmp_path: Path) -> None:
    """The report reads a study as `flushsweep search` prints it: no configuration twice among the best,
    and fANOVA importances that put first the parameter the objective depends on."""
    import optuna

    from sweep.report import search_findings

    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    study = optuna.create_study(study_name="s", storage=url, direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: 10.0 * t.suggest_categorical("pages", [512, 4096, 16384]) / 16384
                   + 0.01 * t.suggest_categorical("sleep_max_us", [0, 100]), n_trials=24)
    found = search_findings(url, "s")
    configs = [tuple(sorted(b["params"].items())) for b in found.best]
    assert len(configs) == len(set(configs)) == 5  # 6 distinct configurations exist; 24 trials repeat them
    assert found.best[0]["params"] == {"pages": 512, "sleep_max_us": 0}
    assert max(found.importances, key=found.importances.get) == "pages"
    assert found.importances["pages"] > 0.9


def test_a_report_stopped_mid_ladder_climbs_on_from_the_stored_rungs_and_stores_every_run_once(
    tmp_path: Path, profile_dir: Path
) -> None:
    from sweep import InProcessExecutor
    from sweep.report import make_report, parse_report_spec
    from storage import open_store

    spec = parse_report_spec(TINY.replace("PROFILE", "flaky").replace("max_vms: 2", "max_vms: 3"), source="tiny.yaml")
    profile = profile_dir / "flaky.yaml"

    def break_round_two(line: str) -> None:  # the runs of round 2 fail for real in the worker
        if ": round 2:" in line:
            profile.rename(profile.with_suffix(".off"))

    with open_store(tmp_path / "store") as store:
        first = make_report(store, spec, day=DAY, executor=InProcessExecutor, log=break_round_two)
        assert first.status == "incomplete" and first.sweep is not None and first.sweep.failed > 0
        round_one = store.results(sweep=f"report.tiny.{WEEK}").num_rows
        assert round_one == 2  # vms = 1 of both flush modes
        profile.with_suffix(".off").rename(profile)
        second = make_report(store, spec, day=DAY, executor=InProcessExecutor)
        assert second.status == "published" and second.record is not None
        rows = store.to_pandas(sweep=f"report.tiny.{WEEK}")
        assert store.check() == []
    runs = second.record["runs"]
    assert runs["reused"] == round_one and runs["computed"] == runs["measured"] - round_one
    assert len(rows) == rows["run_id"].nunique() == runs["measured"]  # every run stored exactly once

    with open_store(tmp_path / "fresh") as store:  # the same report in one go
        whole = make_report(store, spec, day=DAY, executor=InProcessExecutor)
    assert whole.record is not None
    assert whole.record["capacity"] == second.record["capacity"] and whole.record["runs"]["measured"] == runs["measured"]


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
        assert len(store.runs(f"report.tiny.{WEEK}", status="done")) == first.record["runs"]["measured"] >= 2
    assert ReportShelf(tmp_path / "store").published("tiny", WEEK) == first.path == second.path


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_vms: 2", "max_vms: 2\nflavour: x", "tiny.yaml:6: flavour: unknown key"),
        ("base: {", "base: {pcpus: 4, ", "tiny.yaml:6: base.pcpus: pcpus is set by the report's hosts"),
        ("base: {", "base: {vms: 4, ", "tiny.yaml:6: base.vms: the report tries vms = 1 .. max_vms itself; remove it from base"),
        ("vcpus: [4]", "vcpus: [5]", "tiny.yaml:4: vms[0].topologies[0]: smt2 needs an even vcpus, got 5"),
        ("max_vms: 2", "max_vms: 2\nflush_modes: [native, kvm-pv]",
         "tiny.yaml:6: flush_modes[1]: kvm-pv needs a Linux guest and every VM shape is Windows; use hyperv-pv"),
        ("throughput: 0.8", "throughput: 0.8, throughput: 0.9", "tiny.yaml:7: slo.throughput: duplicate key"),
        ("throughput: 0.8", "throughput: 1.2", "tiny.yaml:7: slo.throughput: the slowest VM's share of one VM alone's ops/s"),
        ("throughput: 0.8", "metric: lat_p99_us, max: 100", "tiny.yaml:7: slo.metric: SLO terms are keys of slo now"),
        ("max_vms: 2", "overcommit: [1, 2]", "tiny.yaml:5: overcommit: the report counts VMs per host now"),
        ("max_vms: 2", "max_vms: 100", "tiny.yaml:5: max_vms: expected a whole number >= 1 <= 64 (the most VMs per host to try)"),
        ("pages: 16", "pages: 0", "tiny.yaml:6: base.pages: must be >= 1, got 0"),
        ("profile: literature", "profile: nosuch", "tiny.yaml:6: base.profile: no calibration profile 'nosuch'"),
        ("period: weekly", "period: hourly", "tiny.yaml:2: period: 'hourly' is not one of daily, weekly, monthly"),
    ],
)
def test_a_bad_report_spec_is_one_line_naming_the_line_and_field_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, old: str, new: str, message: str
) -> None:
    from sweep.cli import main

    text = TINY.replace("PROFILE", "literature")
    assert old in text
    text = text.replace(old, new)
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
    assert "SLO: slowest VM >= 80% of one VM alone (ops/s), shootdown p99 <= 400 us, crash-free (worst replicate); pool of 3 hosts" in out
    assert "plan: 24 ladders (host x VM shape x workload x handler x flush mode), vms = 1 .. 3 until the SLO fails: at most 144 runs" in out
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
    assert re.search(r"runs: (\d+) measured \(\1 computed now, 0 reused from the store, 0 failed\)", result.stdout)
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
