"""Sweeps and runs in the metadata database: identity, sharing, the run lifecycle."""

from __future__ import annotations

import datetime as dt

import pytest

from storage import NewRun, StoreError, open_store


def test_begin_sweep_records_provenance_and_is_idempotent(any_store):
    first = any_store.begin_sweep("pv-2018", "name: pv-2018\nvcpus: [64, 128]\n")
    assert first.status == "running" and first.kind == "sweep"
    assert first.created.tzinfo is not None and abs(first.created - dt.datetime.now(dt.timezone.utc)).total_seconds() < 60
    assert first.code_version.startswith("0.") or first.code_version[0].isdigit()
    assert {"pyarrow", "sqlalchemy", "duckdb", "ray", "optuna"} <= set(first.package_versions)
    assert first.host
    any_store.set_sweep_status("pv-2018", "interrupted")
    assert any_store.find_sweep("pv-2018").status == "interrupted"
    again = any_store.begin_sweep("pv-2018", "a different spec\n", kind="sweep")
    assert again.status == "running"
    assert again.spec_hash == first.spec_hash and again.spec_text == first.spec_text  # the driver compares
    assert again.created == first.created
    assert [s.name for s in any_store.sweeps()] == ["pv-2018"]
    assert any_store.find_sweep("nope") is None


def test_spec_hash_identifies_the_spec_text(any_store):
    a = any_store.begin_sweep("a", "x: 1\n")
    b = any_store.begin_sweep("b", "x: 1\n")
    c = any_store.begin_sweep("c", "x: 2\n")
    assert a.spec_hash == b.spec_hash != c.spec_hash


def test_sweep_names_must_be_safe_directory_names(tmp_store):
    for bad in ("", "a/b", "../up", "with space", ".hidden", "x" * 200):
        with pytest.raises(StoreError, match="sweep name"):
            tmp_store.begin_sweep(bad, "")
    with pytest.raises(StoreError, match="unknown sweep"):
        tmp_store.set_sweep_status("never-begun", "done")
    with pytest.raises(StoreError, match="sweep status"):
        tmp_store.set_sweep_status("never-begun", "finished")


def test_a_run_shared_by_two_sweeps_is_stored_once(any_store, result_rows):
    runs = result_rows.pairs(3)
    any_store.begin_sweep("first", "")
    any_store.begin_sweep("second", "")
    assert any_store.add_runs("first", runs) == 6
    assert any_store.add_runs("first", runs) == 0  # idempotent
    overlap = runs[2:] + result_rows.pairs(1, start=100)
    assert any_store.add_runs("second", overlap) == 2  # only the two new ones
    assert len(any_store.runs()) == 8
    assert {r.run_id for r in any_store.runs("second")} == {r.run_id for r in overlap}
    assert any_store.progress("second") == {"pending": 6, "running": 0, "done": 0, "failed": 0}

    # computed once by the first sweep, it counts as done for the second one too
    any_store.mark_running([r.run_id for r in runs])
    any_store.commit_results("first", result_rows.rows(runs))
    assert any_store.progress("second") == {"pending": 2, "running": 0, "done": 4, "failed": 0}
    assert any_store.results(sweep="second").num_rows == 4


def test_runs_keep_config_and_baseline_for_resume(any_store, result_rows):
    runs = result_rows.pairs(2)
    any_store.begin_sweep("s", "")
    any_store.add_runs("s", runs)
    by_id = {r.run_id: r for r in any_store.runs("s")}
    for run in runs:
        record = by_id[run.run_id]
        assert dict(record.config) == run.config
        assert record.baseline_run_id == run.baseline_run_id
        assert (record.status, record.attempts, record.result_file) == ("pending", 0, None)


def test_duplicate_run_ids_in_one_call_keep_the_first(tmp_store):
    tmp_store.begin_sweep("s", "")
    n = tmp_store.add_runs("s", [NewRun("r1", {"seed": 1}), NewRun("r1", {"seed": 2})])
    assert n == 1
    assert tmp_store.runs()[0].config == {"seed": 1}


def test_run_lifecycle_attempts_failures_and_requeue(any_store, result_rows):
    runs = result_rows.pairs(2)
    ids = [r.run_id for r in runs]
    any_store.begin_sweep("s", "")
    any_store.add_runs("s", runs)

    any_store.mark_running(ids)
    assert {r.status for r in any_store.runs("s")} == {"running"}
    assert all(r.attempts == 1 and r.started is not None for r in any_store.runs("s"))

    any_store.record_failure(ids[0], "Traceback ...\nValueError: boom", node="node-7", final=False)
    any_store.record_failure(ids[1], "worker died", final=True)
    by_id = {r.run_id: r for r in any_store.runs("s")}
    assert by_id[ids[0]].status == "pending" and "boom" in by_id[ids[0]].error and by_id[ids[0]].node == "node-7"
    assert by_id[ids[1]].status == "failed" and by_id[ids[1]].error == "worker died"
    assert any_store.progress("s") == {"pending": 1, "running": 2, "done": 0, "failed": 1}
    assert [r.run_id for r in any_store.runs("s", status="failed")] == [ids[1]]

    # a driver died: its running runs go back to pending, attempts kept
    assert any_store.requeue("s") == 2
    assert any_store.progress("s") == {"pending": 3, "running": 0, "done": 0, "failed": 1}
    assert {r.attempts for r in any_store.runs("s", status="pending") if r.run_id != ids[0]} == {1}
    # asked to, failed runs come back too, with a fresh attempt budget
    assert any_store.requeue("s", include_failed=True) == 1
    assert by_id[ids[1]].run_id in {r.run_id for r in any_store.runs("s", status="pending")}
    assert {r.attempts for r in any_store.runs("s") if r.run_id == ids[1]} == {0}

    any_store.mark_running(ids)
    any_store.commit_results("s", result_rows.rows(runs))
    # a late failure report for a run already done does not undo it
    any_store.record_failure(ids[2], "late duplicate", final=True)
    assert any_store.progress("s")["done"] == 4
    with pytest.raises(StoreError, match="unknown run_id"):
        any_store.record_failure("no-such-run", "x", final=True)


def test_mark_running_only_moves_pending_runs(tmp_store, result_rows):
    runs = result_rows.pairs(1)
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", runs)
    tmp_store.mark_running([runs[0].run_id])
    tmp_store.mark_running([runs[0].run_id])  # already running: no second attempt counted
    assert {r.run_id: r.attempts for r in tmp_store.runs()}[runs[0].run_id] == 1


def test_metadata_persists_across_reopen(store_dir, db_url, result_rows):
    runs = result_rows.pairs(2)
    with open_store(store_dir, db_url) as store:
        store.begin_sweep("s", "spec")
        store.add_runs("s", runs)
        store.mark_running([runs[0].run_id])
    with open_store(store_dir, db_url, readonly=True) as store:
        assert store.progress("s") == {"pending": 3, "running": 1, "done": 0, "failed": 0}
        assert store.find_sweep("s").spec_text == "spec"
        with pytest.raises(StoreError, match="read-only"):
            store.add_runs("s", runs)


def test_run_config_must_be_plain_json(tmp_store):
    tmp_store.begin_sweep("s", "")
    with pytest.raises(StoreError, match="not plain JSON"):
        tmp_store.add_runs("s", [NewRun("r", {"when": dt.datetime.now()})])
    with pytest.raises(StoreError, match="run_id"):
        tmp_store.add_runs("s", [NewRun("", {})])
    with pytest.raises(StoreError, match="unknown sweep"):
        tmp_store.add_runs("other", [NewRun("r", {})])
