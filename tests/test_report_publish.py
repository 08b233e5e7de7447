"""ReportShelf: a period's report appears whole or not at all, once, and "previous" is the period before."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from sweep.report import AlreadyPublished, ReportShelf


def _files(name: str, key: str, generated: str, body: str = "x") -> dict[str, bytes]:
    record = {"name": name, "period_key": key, "generated_at": generated, "slo": "lat_p99_us <= 1 us (worst replicate)",
              "runs": {"planned": 2, "computed": 1}, "hazards": [], "code_version": "0+test", "description": ""}
    return {"report.html": f"<p>{body}</p>".encode(), "summary.txt": body.encode(), "figures/a.png": b"\x89PNG",
            "report.json": json.dumps(record).encode()}


def test_a_period_publishes_once_and_force_replaces_it_whole(tmp_path: Path) -> None:
    shelf = ReportShelf(tmp_path)
    with shelf.lock():
        path = shelf.publish("cap", "2025-W14", _files("cap", "2025-W14", "2025-04-02T06:00:00", "first"))
    assert shelf.published("cap", "2025-W14") == path and shelf.summary("cap", "2025-W14") == "first"
    with shelf.lock(), pytest.raises(AlreadyPublished):
        shelf.publish("cap", "2025-W14", _files("cap", "2025-W14", "2025-04-03T06:00:00", "second"))
    assert (path / "report.html").read_text() == "<p>first</p>"
    with shelf.lock():
        shelf.publish("cap", "2025-W14", _files("cap", "2025-W14", "2025-04-03T06:00:00", "second"), force=True)
    assert (path / "report.html").read_text() == "<p>second</p>" and shelf.summary("cap", "2025-W14") == "second"
    assert [p.name for p in path.parent.iterdir()] == ["2025-W14"]


def test_leftovers_of_a_dead_publisher_are_neither_listed_nor_kept(tmp_path: Path) -> None:
    shelf = ReportShelf(tmp_path)
    dead = tmp_path / "reports" / "cap" / ".staging-2025-W15-deadbeef"
    dead.mkdir(parents=True)
    (dead / "report.json").write_text(json.dumps({"name": "cap", "period_key": "2025-W15", "generated_at": "z"}))
    assert shelf.records() == [] and shelf.published("cap", "2025-W15") is None
    with shelf.lock():
        shelf.publish("cap", "2025-W14", _files("cap", "2025-W14", "a"))
        index = shelf.write_index()
    assert not dead.exists()
    assert 'href="cap/2025-W14/report.html"' in index.read_text() and "2025-W15" not in index.read_text()


def test_previous_is_the_latest_earlier_period_even_if_an_older_one_was_redone_later(tmp_path: Path) -> None:
    shelf = ReportShelf(tmp_path)
    with shelf.lock():
        shelf.publish("cap", "2025-W12", _files("cap", "2025-W12", "2025-03-17T06:00:00"))
        shelf.publish("cap", "2025-W13", _files("cap", "2025-W13", "2025-03-24T06:00:00"))
        shelf.publish("cap", "2025-W12", _files("cap", "2025-W12", "2025-03-30T09:00:00"), force=True)  # redone last
        shelf.publish("other", "2025-W13", _files("other", "2025-W13", "2025-03-31T06:00:00"))
    assert shelf.previous("cap", "2025-W14")["period_key"] == "2025-W13"  # type: ignore[index]
    assert shelf.previous("cap", "2025-W13")["period_key"] == "2025-W12"  # type: ignore[index]
    assert shelf.previous("cap", "2025-W12") is None  # nothing before it
    assert shelf.previous("new", "2025-W14") is None


def _race(root: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:  # type: ignore[name-defined]
    shelf = ReportShelf(root)
    barrier.wait()
    with shelf.lock():
        if shelf.published("cap", "2025-W14"):
            results.put("skipped")
            return
        shelf.publish("cap", "2025-W14", _files("cap", "2025-W14", "t"))
        results.put("published")


def test_two_processes_racing_on_one_period_publish_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["published", "skipped", "skipped"]
