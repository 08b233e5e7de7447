"""The sweep controller on the in-process executor: real simulation, real SQLite store, no Ray."""

from __future__ import annotations

import io
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pyarrow.compute as pc
import pytest

from storage import StoreError
from sweep import (
    InProcessExecutor,
    Progress,
    RunOptions,
    RunTask,
    execute_batch,
    execute_sweep,
    expand,
    parse_spec,
    start_sweep,
)
from sweep._executor import Completion
from sweep._task import RunOutcome, pack_outcomes
from sweep_fixtures import profile_dir, sweep_store  # noqa: F401 - fixtures

CHEAP = "{workload: cpu-bound, vcpus: 4, pcpus: 2, threads: 2, duration_s: 0.01}"
SPEC = f"""
name: ctl
base: {CHEAP}
axes:
  vcpus: [2, 4]
  flush_mode: [native, hyperv-pv]
replicates: 3
compare: {{field: flush_mode, baseline: native, baseline_overrides: {{enlightenments: false}}}}
"""


def plan(store: Any, text: str = SPEC):
    spec = parse_spec(text)
    exp = expand(spec)
    start_sweep(store, spec, exp)
    return spec, exp


def stored_ids(store: Any, sweep: str) -> list[str]:
    return store.results(sweep=sweep).column("run_id").to_pylist()


class Recorder:
    """The real batch function, remembering batch sizes (to see batching) and optionally acting after N batches."""

    def __init__(self, after: int | None = None, action: Any = None) -> None:
        self.sizes: list[int] = []
        self.after, self.action = after, action

    def __call__(self, tasks: Sequence[RunTask], node: str):
        self.sizes.append(len(tasks))
        if self.after is not None and len(self.sizes) == self.after:
            self.action()
        return execute_batch(tasks, node)


def test_sweep_stores_each_run_once_with_baseline_and_node(sweep_store: Any) -> None:
    _, exp = plan(sweep_store)
    report = execute_sweep(sweep_store, "ctl", InProcessExecutor(node="node-a", workers=2), order=[r.run_id for r in exp.runs])
    assert report.status == "done" and report.complete
    assert report.done == len(exp.runs) == 12
    rows = sweep_store.results(sweep="ctl").to_pylist()
    assert sorted(row["run_id"] for row in rows) == sorted(r.run_id for r in exp.runs)
    assert {row["node"] for row in rows} == {"node-a"}
    by_id = {row["run_id"]: row for row in rows}
    for r in exp.runs:
        assert by_id[r.run_id]["baseline_run_id"] == r.baseline_run_id
        assert by_id[r.run_id]["flush_mode"] == r.config.flush_mode
    assert sweep_store.find_sweep("ctl").status == "done"


def test_rerunning_costs_nothing_and_extending_runs_only_new_runs(sweep_store: Any) -> None:
    _, exp = plan(sweep_store)
    execute_sweep(sweep_store, "ctl", InProcessExecutor())

    def no_executor_needed():
        raise AssertionError("nothing is left to run, so no executor may be started")

    again = execute_sweep(sweep_store, "ctl", no_executor_needed)
    assert (again.status, again.done, again.skipped) == ("done", 0, len(exp.runs))

    _, bigger = plan(sweep_store, SPEC.replace("vcpus: [2, 4]", "vcpus: [2, 4, 8]"))
    rec = Recorder()
    report = execute_sweep(sweep_store, "ctl", InProcessExecutor(batch=rec))
    assert report.done == len(bigger.runs) - len(exp.runs) == sum(rec.sizes) == 6
    assert report.skipped == len(exp.runs)
    ids = stored_ids(sweep_store, "ctl")
    assert len(ids) == len(set(ids)) == len(bigger.runs)


def test_a_run_shared_with_another_sweep_is_not_computed_again(sweep_store: Any) -> None:
    plan(sweep_store)
    execute_sweep(sweep_store, "ctl", InProcessExecutor())
    _, other = plan(sweep_store, SPEC.replace("name: ctl", "name: other").replace("vcpus: [2, 4]", "vcpus: [4, 8]"))
    rec = Recorder()
    report = execute_sweep(sweep_store, "other", InProcessExecutor(batch=rec))
    assert report.skipped == 6 and report.done == 6 and sum(rec.sizes) == 6
    assert sorted(stored_ids(sweep_store, "other")) == sorted(r.run_id for r in other.runs)


def test_short_runs_are_batched_into_longer_tasks(sweep_store: Any) -> None:
    spec_text = f"name: many\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 59}}\n"
    plan(sweep_store, spec_text)
    rec = Recorder()
    report = execute_sweep(sweep_store, "many", InProcessExecutor(batch=rec, workers=2), options=RunOptions(min_task_s=0.05))
    assert report.done == 60
    assert rec.sizes[0] == 1 and max(rec.sizes) > 1  # the first task measures, later ones are batched
    ids = stored_ids(sweep_store, "many")
    assert len(ids) == len(set(ids)) == 60


def test_failing_runs_are_retried_recorded_and_the_sweep_carries_on(sweep_store: Any, profile_dir: Path) -> None:
    text = f"name: flaky\nbase: {CHEAP}\naxes:\n  profile: [literature, flaky]\n  seed: [0, 1]\n"
    _, exp = plan(sweep_store, text)
    (profile_dir / "flaky.yaml").rename(profile_dir / "flaky.yaml.off")  # the worker can no longer load it
    rec = Recorder()
    report = execute_sweep(sweep_store, "flaky", InProcessExecutor(batch=rec), options=RunOptions(max_attempts=3))
    assert (report.status, report.done, report.failed) == ("failed", 2, 2)
    assert report.retried == 4 and sum(rec.sizes) == 2 + 2 * 3  # two good runs, two bad ones tried 3 times
    failed = sweep_store.runs("flaky", status="failed")
    assert len(failed) == 2 and all("no calibration profile 'flaky'" in (r.error or "") for r in failed)
    assert all("Traceback" in (r.error or "") for r in failed)
    assert all(f.summary.startswith("workers.config.ConfigError") for f in report.failures)

    (profile_dir / "flaky.yaml.off").rename(profile_dir / "flaky.yaml")  # fixed: resume finishes the sweep
    resumed = execute_sweep(sweep_store, "flaky", InProcessExecutor())
    assert (resumed.status, resumed.done, resumed.skipped) == ("done", 2, 2)
    assert sorted(stored_ids(sweep_store, "flaky")) == sorted(r.run_id for r in exp.runs)


def test_fail_fast_stops_at_the_first_failure(sweep_store: Any, profile_dir: Path) -> None:
    text = f"name: ff\nbase: {CHEAP}\naxes:\n  profile: [flaky, literature]\n  seed: {{from: 0, to: 9}}\n"
    plan(sweep_store, text)
    (profile_dir / "flaky.yaml").unlink()
    # one run per task, so "first failure" is well defined whatever the measured run time
    options = RunOptions(max_attempts=1, fail_fast=True, max_batch=1)
    report = execute_sweep(sweep_store, "ff", InProcessExecutor(), options=options)
    assert report.status == "failed" and report.failed == 1 and report.remaining > 0
    counts = sweep_store.progress("ff")
    assert counts["running"] == 0 and counts["failed"] == 1
    assert counts["pending"] == report.remaining


def test_sigint_stops_cleanly_and_resume_finishes(sweep_store: Any) -> None:
    text = f"name: intr\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 29}}\n"
    _, exp = plan(sweep_store, text)
    rec = Recorder(after=4, action=lambda: os.kill(os.getpid(), signal.SIGINT))
    report = execute_sweep(sweep_store, "intr", InProcessExecutor(batch=rec), options=RunOptions(max_batch=1))
    assert report.status == "interrupted" and 0 < report.done < 30
    assert sweep_store.find_sweep("intr").status == "interrupted"
    counts = sweep_store.progress("intr")
    assert counts["running"] == 0 and counts["done"] == report.done  # nothing half-done, nothing left running
    assert len(stored_ids(sweep_store, "intr")) == report.done

    resumed = execute_sweep(sweep_store, "intr", InProcessExecutor())
    assert resumed.status == "done" and resumed.done == 30 - report.done
    ids = stored_ids(sweep_store, "intr")
    assert sorted(ids) == sorted(r.run_id for r in exp.runs)


def test_cancel_from_another_handle_stops_the_driver(sweep_store: Any, tmp_path: Path) -> None:
    from storage import open_store

    text = f"name: cnl\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 39}}\n"
    plan(sweep_store, text)

    def cancel_elsewhere() -> None:
        with open_store(tmp_path / "store") as other:  # as `flushsweep cancel` would, from another process
            other.set_sweep_status("cnl", "cancelled")

    rec = Recorder(after=3, action=cancel_elsewhere)
    report = execute_sweep(sweep_store, "cnl", InProcessExecutor(batch=rec), options=RunOptions(max_batch=1, cancel_check_s=0.0))
    assert report.status == "cancelled" and report.remaining > 0
    assert sweep_store.find_sweep("cnl").status == "cancelled"
    assert sweep_store.progress("cnl")["running"] == 0


def test_progress_lines_without_a_terminal(sweep_store: Any) -> None:
    plan(sweep_store)
    out = io.StringIO()
    execute_sweep(sweep_store, "ctl", InProcessExecutor(), progress=Progress("ctl", stream=out, tty=False, interval_s=0.0))
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("ctl: ") for line in lines)
    assert "12/12 runs: 12 done, 0 failed, 0 skipped" in lines[-1] and "runs/s" in lines[-1]
    assert "\r" not in out.getvalue()


def test_progress_bar_on_a_terminal_redraws_one_line_while_runs_complete(sweep_store: Any) -> None:
    import itertools
    import re

    plan(sweep_store)
    out = io.StringIO()
    ticks = itertools.count(0.0, 1.0)  # a second per reading: every update is due, so each one draws
    progress = Progress("ctl", stream=out, tty=True, clock=lambda: next(ticks))
    report = execute_sweep(sweep_store, "ctl", InProcessExecutor(), options=RunOptions(max_batch=1, commit_rows=1), progress=progress)
    assert report.done == 12 and report.skipped == 0  # real work, not a sweep with nothing left to do
    text = out.getvalue()
    frames = text.rstrip("\n").split("\r\x1b[2K")[1:]
    assert text.startswith("\r\x1b[2K") and text.endswith("\n") and text.count("\n") == 1
    finished = [int(re.search(r"\] (\d+)/12 runs", f).group(1)) for f in frames]
    assert finished == sorted(finished) and finished[-1] == 12 and len(set(finished)) > 3  # it moved as runs completed
    assert any(re.search(r"\[#+\.+\]", f) for f in frames)  # a partly filled bar was drawn mid-sweep
    assert "[########################]" in frames[-1] and "12 done" in frames[-1]


def test_interrupted_attempts_do_not_count_as_failures(sweep_store: Any) -> None:
    text = f"name: att\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 9}}\n"
    plan(sweep_store, text)
    rec = Recorder(after=2, action=lambda: os.kill(os.getpid(), signal.SIGINT))
    execute_sweep(sweep_store, "att", InProcessExecutor(batch=rec, workers=2), options=RunOptions(max_batch=1))
    statuses = Counter(r.status for r in sweep_store.runs("att"))
    assert statuses["failed"] == 0 and statuses["running"] == 0


def test_a_finished_sweep_is_compacted_and_reads_the_same(sweep_store: Any) -> None:
    """One file per commit while the sweep runs; once nothing is left, one file, same rows."""
    text = f"name: cmp\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 19}}\n"
    _, exp = plan(sweep_store, text)
    partition = sweep_store.results_dir / "sweep=cmp"
    rec = Recorder(after=6, action=lambda: os.kill(os.getpid(), signal.SIGINT))
    options = RunOptions(max_batch=1, commit_rows=1)
    first = execute_sweep(sweep_store, "cmp", InProcessExecutor(batch=rec), options=options)
    assert first.status == "interrupted" and first.remaining > 0
    assert len(list(partition.glob("*.parquet"))) == first.done > 1  # unfinished: left as committed
    before = sweep_store.results(sweep="cmp").sort_by("run_id")

    resumed = execute_sweep(sweep_store, "cmp", InProcessExecutor(), options=options)
    assert resumed.status == "done" and resumed.remaining == 0
    assert len(list(partition.glob("*.parquet"))) == 1
    after = sweep_store.results(sweep="cmp").sort_by("run_id")
    assert sorted(after.column("run_id").to_pylist()) == sorted(r.run_id for r in exp.runs)
    kept = after.filter(pc.is_in(after.column("run_id"), value_set=before.column("run_id")))
    assert kept.select(before.column_names).equals(before)
    assert sweep_store.check() == []


def test_a_failed_compaction_only_warns(sweep_store: Any, caplog: Any) -> None:
    plan(sweep_store)
    execute_sweep(sweep_store, "ctl", InProcessExecutor(), options=RunOptions(max_batch=1, commit_rows=1))
    _, bigger = plan(sweep_store, SPEC.replace("vcpus: [2, 4]", "vcpus: [2, 4, 8]"))
    victim = next((sweep_store.results_dir / "sweep=ctl").glob("*.parquet"))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF  # bit rot, same size: only the checksum notices
    victim.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="flushsweep.sweep"):
        report = execute_sweep(sweep_store, "ctl", InProcessExecutor(), options=RunOptions(max_batch=1, commit_rows=1))
    assert report.status == "done" and report.done == len(bigger.runs) - 12
    assert "compacting its result files failed" in caplog.text and "store check --repair" in caplog.text
    assert sweep_store.find_sweep("ctl").status == "done"


# --- results travel as one Arrow table per task ---------------------------------------


def _ok(run_id: str, **fields: Any) -> RunOutcome:
    return RunOutcome(run_id, {"run_id": run_id, "node": "n", **fields}, None, "n", 0.01)


def test_a_task_packs_its_successful_rows_into_one_table_with_their_run_ids() -> None:
    failed = RunOutcome("r2", None, "Traceback: boom", "n", 0.01)
    packed = pack_outcomes([_ok("r1", x=1, y=0.5, s="a"), failed, _ok("r3", x=2, y=None, s="b")])
    assert packed.table is not None and packed.table.column("run_id").to_pylist() == ["r1", "r3"]
    assert [o.ok for o in packed.outcomes] == [True, False, True]
    assert all(o.row is None for o in packed.outcomes) and packed.outcomes[1].error == "Traceback: boom"
    completion = Completion.of(1, packed)
    assert completion.rows_by_run()["r3"] == {"run_id": "r3", "node": "n", "x": 2, "y": None, "s": "b"}
    assert set(completion.rows_by_run()) == {"r1", "r3"}
    single = pack_outcomes([_ok("r1", x=1)])  # a search's one-run task travels as a table too
    assert single.table is not None and single.table.to_pylist() == [{"run_id": "r1", "node": "n", "x": 1}]
    different_fields = pack_outcomes([_ok("r1", x=1), _ok("r2", y=2.5)])
    assert different_fields.table is not None and different_fields.table.to_pylist() == [
        {"run_id": "r1", "node": "n", "x": 1, "y": None}, {"run_id": "r2", "node": "n", "x": None, "y": 2.5}]


def test_rows_that_do_not_make_a_table_carry_the_stores_own_one_line_error(tmp_store: Any, result_rows: Any) -> None:
    """The worker and the store share one encoder, so the worker names the bad column exactly as a commit would."""
    cases = {
        "mixed": [_ok("r1", x=1), _ok("r2", x="one")],
        "huge": [_ok("r1", x=1), _ok("r2", x=2**70)],
        "nested": [_ok("r1", x={"a": 1})],
        "list": [_ok("r1", x=[1, 2])],
    }
    runs = result_rows.pairs(1)
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", runs)
    for name, outcomes in cases.items():
        packed = pack_outcomes(outcomes)
        assert packed.table is None and packed.problem is not None, name
        assert len(packed.problem.splitlines()) == 1 and "result column 'x'" in packed.problem, name
        rows = [{**o.row, "run_id": runs[i % 2].run_id} for i, o in enumerate(outcomes)]  # the same rows, as dicts
        with pytest.raises(StoreError) as refused:
            tmp_store.commit_results("s", rows)
        assert str(refused.value) == packed.problem, name
    assert tmp_store.progress("s")["done"] == 0


def test_a_task_whose_rows_do_not_make_a_table_stops_the_sweep_with_that_error(sweep_store: Any) -> None:
    text = f"name: bad\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 5}}\n"
    _, exp = plan(sweep_store, text)
    order = [r.run_id for r in exp.runs]
    values = lambda i: i if i < 3 else {"nested": i}  # noqa: E731 - the fourth run's row holds a dict
    with pytest.raises(StoreError, match="^result column 'x' has value \\{'nested': 3\\} \\(dict\\); result rows hold flat scalars"):
        execute_sweep(sweep_store, "bad", InProcessExecutor(batch=FakeRows(order, values), node="n"), order=order,
                      options=RunOptions(max_batch=1))
    stored = {r["run_id"]: r["x"] for r in sweep_store.results(sweep="bad").to_pylist()}
    assert stored == {order[i]: i for i in range(3)}  # what came before is committed, nothing of the bad row
    counts = sweep_store.progress("bad")
    assert (counts["done"], counts["running"], counts["pending"]) == (3, 0, 3)  # the rest can be resumed
    assert sweep_store.find_sweep("bad").status == "interrupted"


def test_an_invalid_run_state_transition_is_an_error_naming_the_run_not_an_assert(sweep_store: Any) -> None:
    from sweep import SweepController
    from sweep._controller import TransitionError

    _, exp = plan(sweep_store)
    tasks = [RunTask(r.run_id, r.config.to_dict(), r.baseline_run_id) for r in exp.runs]
    controller = SweepController(store=sweep_store, sweep="ctl", executor=InProcessExecutor(), tasks=tasks)
    controller.step()
    queued = next(t.run_id for t in tasks if controller._runs[t.run_id].state == "queued")
    with pytest.raises(TransitionError, match=f"^run {queued}: queued -> done is not a valid transition$"):
        controller._set_state(queued, "done")
    assert controller._runs[queued].state == "queued"  # refused before anything changed


def test_the_worker_import_and_packing_path_loads_no_sql_duckdb_or_optuna() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sweep._task import RunOutcome, pack_outcomes\n"
        "packed = pack_outcomes([RunOutcome('r1', {'run_id': 'r1', 'x': 1.5}, None, 'n', 0.1)])\n"
        "assert packed.table.num_rows == 1\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'duckdb', 'optuna', 'ray', 'psycopg') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


class FakeRows:
    """A batch function returning made-up rows: ``values`` maps a run's position to its row's ``x``."""

    def __init__(self, order: list[str], values: Any) -> None:
        self.position = {rid: i for i, rid in enumerate(order)}
        self.values = values

    def __call__(self, tasks: Sequence[RunTask], node: str) -> list[RunOutcome]:
        return [_ok(t.run_id, x=self.values(self.position[t.run_id])) for t in tasks]


def test_packed_tables_of_different_column_types_are_combined_as_the_store_widens(sweep_store: Any) -> None:
    text = f"name: pk\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 11}}\n"
    _, exp = plan(sweep_store, text)
    order = [r.run_id for r in exp.runs]
    values = lambda i: None if i < 4 else (i if i < 8 else i + 0.5)  # noqa: E731 - NULL, int, then float columns
    options = RunOptions(max_batch=4, min_task_s=1.0, commit_rows=100)
    report = execute_sweep(sweep_store, "pk", InProcessExecutor(batch=FakeRows(order, values), node="n"), order=order,
                           options=options)
    assert report.status == "done" and report.done == 12
    rows = {r["run_id"]: r["x"] for r in sweep_store.results(sweep="pk").to_pylist()}
    assert rows == {rid: values(i) for i, rid in enumerate(order)} and sweep_store.columns()["x"] == "float64"


def test_packed_tables_whose_types_clash_commit_what_fits_and_the_store_names_the_column(sweep_store: Any) -> None:
    text = f"name: clash\nbase: {CHEAP}\naxes:\n  seed: {{from: 0, to: 8}}\n"
    _, exp = plan(sweep_store, text)
    order = [r.run_id for r in exp.runs]
    values = lambda i: i if i < 5 else f"text-{i}"  # noqa: E731 - int runs, then string runs
    options = RunOptions(max_batch=4, min_task_s=1.0, commit_rows=100)
    # tasks of int runs and of string runs do not combine (the store refuses the later ones); a task holding both
    # does not make a table (the worker says so, in the store's words): either way, one line naming the column
    with pytest.raises(StoreError, match="^result column 'x' (holds (int64|string) values in this store|mixes int and str values)"):
        execute_sweep(sweep_store, "clash", InProcessExecutor(batch=FakeRows(order, values), node="n"), order=order,
                      options=options)
    stored = {r["run_id"]: r["x"] for r in sweep_store.results(sweep="clash").to_pylist()}
    assert stored and all(x == values(order.index(rid)) for rid, x in stored.items())
    assert len({type(x) for x in stored.values()}) == 1  # the part that came first; the clashing one was refused
    counts = sweep_store.progress("clash")
    assert counts["done"] == len(stored)  # what the controller reports done is what the store holds
