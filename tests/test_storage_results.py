"""Results as Parquet: what goes in comes out, exactly once, with stable and additive columns."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import NewRun, RESULTS_SCHEMA_VERSION, StoreError, open_store


def _by_run(table) -> dict[str, dict]:
    return {row["run_id"]: row for row in table.to_pylist()}


def test_committed_rows_read_back_identically(seeded_store, result_rows):
    store, runs = seeded_store
    got = _by_run(store.results())
    assert set(got) == {r.run_id for r in runs}
    for run in runs:
        expected = result_rows.row(run, node="node-1" if runs.index(run) < 10 else "node-2")
        row = got[run.run_id]
        for key, value in expected.items():
            assert row[key] == value, key
        assert row["sweep"] == "sw" and row["schema_version"] == RESULTS_SCHEMA_VERSION


def test_results_are_hive_partitioned_one_file_per_batch(seeded_store):
    store, runs = seeded_store
    files = sorted(store.results_dir.glob("sweep=sw/*.parquet"))
    assert len(files) == 2
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(runs)
    assert "sweep" not in pq.ParquetFile(files[0]).schema_arrow.names  # the partition lives in the path
    assert not list(store.store_dir.rglob("*.tmp"))
    done = store.runs("sw", status="done")
    assert len(done) == len(runs) and {r.result_file for r in done} == {
        str(f.relative_to(store.store_dir)) for f in files
    }


def test_a_run_is_stored_exactly_once(seeded_store, result_rows):
    store, runs = seeded_store
    again = result_rows.rows(runs[:4], real_s=-1.0)
    assert store.commit_results("sw", again) == 0  # already done: dropped
    assert len(list(store.results_dir.glob("sweep=sw/*.parquet"))) == 2  # no empty file either
    got = _by_run(store.results())
    assert len(got) == len(runs) and all(row["real_s"] > 0 for row in got.values())
    # duplicates inside one batch: the first wins
    store.begin_sweep("other", "")
    extra = result_rows.pairs(1, start=50)
    store.add_runs("other", extra)
    first, second = result_rows.row(extra[0], real_s=1.5), result_rows.row(extra[0], real_s=2.5)
    assert store.commit_results("other", [first, second, result_rows.row(extra[1])]) == 2
    assert _by_run(store.results({"run_id": extra[0].run_id}))[extra[0].run_id]["real_s"] == 1.5


def test_a_commit_marks_exactly_its_runs_done_and_leaves_every_other_run_as_it_was(any_store, result_rows):
    """One statement marks the batch done; runs outside it keep their state, failed runs their own error."""
    runs = result_rows.pairs(4)
    any_store.begin_sweep("s", "")
    any_store.add_runs("s", runs)
    any_store.mark_running([r.run_id for r in runs[:6]])
    any_store.record_failure(runs[4].run_id, "first attempt: boom", node="node-9", final=False)
    any_store.record_failure(runs[5].run_id, "out of memory", node="node-8", final=True)
    assert any_store.commit_results("s", result_rows.rows([*runs[:3], runs[4]], node="node-3")) == 4

    by_id = {r.run_id: r for r in any_store.runs("s")}
    done = [by_id[r.run_id] for r in (*runs[:3], runs[4])]
    assert {r.status for r in done} == {"done"} and len({r.result_file for r in done}) == 1
    assert all(r.error is None and r.node == "node-3" and r.finished is not None for r in done)
    assert (by_id[runs[3].run_id].status, by_id[runs[3].run_id].attempts) == ("running", 1)
    assert by_id[runs[3].run_id].result_file is None
    failed = by_id[runs[5].run_id]
    assert (failed.status, failed.error, failed.node) == ("failed", "out of memory", "node-8")
    assert [(by_id[r.run_id].status, by_id[r.run_id].attempts) for r in runs[6:]] == [("pending", 0)] * 2
    assert any_store.progress("s") == {"pending": 2, "running": 1, "done": 4, "failed": 1}


def test_rows_for_unregistered_runs_are_refused_whole(tmp_store, result_rows):
    runs = result_rows.pairs(1)
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", runs[:1])
    with pytest.raises(StoreError, match="never registered"):
        tmp_store.commit_results("s", result_rows.rows(runs))
    assert tmp_store.results().num_rows == 0
    assert tmp_store.progress("s")["done"] == 0
    assert not list(tmp_store.store_dir.rglob("*.parquet"))
    with pytest.raises(StoreError, match="unknown sweep"):
        tmp_store.commit_results("nope", result_rows.rows(runs[:1]))
    with pytest.raises(StoreError, match="run_id"):
        tmp_store.commit_results("s", [{"real_s": 1.0}])


def test_new_metric_columns_are_additive_and_old_files_stay_readable(any_store, result_rows):
    runs = result_rows.pairs(2)
    any_store.begin_sweep("s", "")
    any_store.add_runs("s", runs)
    any_store.commit_results("s", result_rows.rows(runs[:2]))
    any_store.commit_results("s", result_rows.rows(runs[2:], tlb_misses=12345, note="second batch"))
    got = _by_run(any_store.results())
    assert [got[r.run_id]["tlb_misses"] for r in runs] == [None, None, 12345, 12345]
    assert [got[r.run_id]["note"] for r in runs] == [None, None, "second batch", "second batch"]
    assert any_store.columns()["tlb_misses"] == "int64"
    # a column missing from a later batch reads as NULL, not as an error
    runs2 = result_rows.pairs(1, start=10)
    any_store.add_runs("s", runs2)
    rows = result_rows.rows(runs2)
    for row in rows:
        del row["lat_p99_us"]
    any_store.commit_results("s", rows)
    assert any_store.results({"run_id": runs2[0].run_id}).column("lat_p99_us").to_pylist() == [None]


def test_column_types_are_stable(tmp_store, result_rows):
    runs = result_rows.pairs(3)
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", runs)
    tmp_store.commit_results("s", result_rows.rows(runs[:2]))
    # an int where floats were stored widens silently
    assert tmp_store.commit_results("s", [result_rows.row(runs[2], real_s=3)]) == 1
    assert _by_run(tmp_store.results())[runs[2].run_id]["real_s"] == 3.0
    # a float where ints were stored would be truncated: refused, nothing written
    with pytest.raises(StoreError, match="'ops' holds int64 values.*1.5"):
        tmp_store.commit_results("s", [result_rows.row(runs[3], ops=1.5)])
    with pytest.raises(StoreError, match="'vcpus' holds int64"):
        tmp_store.commit_results("s", [result_rows.row(runs[3], vcpus="many")])
    with pytest.raises(StoreError, match="flat scalars"):
        tmp_store.commit_results("s", [result_rows.row(runs[3], histogram=[1, 2, 3])])
    with pytest.raises(StoreError, match="clashes with existing column 'vcpus'"):
        tmp_store.commit_results("s", [result_rows.row(runs[3], VCPUS=3)])
    assert tmp_store.progress("s")["done"] == 3
    assert tmp_store.results().num_rows == 3


def test_a_column_that_is_null_throughout_gets_its_type_later(tmp_store, result_rows):
    runs = result_rows.pairs(2)
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", runs)
    tmp_store.commit_results("s", result_rows.rows(runs[:2], warmup_s=None))
    assert "warmup_s" not in tmp_store.columns()
    tmp_store.commit_results("s", result_rows.rows(runs[2:], warmup_s=0.25))
    got = _by_run(tmp_store.results())
    assert [got[r.run_id].get("warmup_s") for r in runs] == [None, None, 0.25, 0.25]
    assert tmp_store.columns()["warmup_s"] == "float64"


def test_results_filter_by_columns_and_sweep(seeded_store, result_rows):
    store, runs = seeded_store
    rows = result_rows.rows(runs)
    for flt in ({"vcpus": 64}, {"vcpus": [16, 128], "flush_mode": "hyperv-pv"}, {"baseline_run_id": None},
                {"outcome": "crash"}, {"vcpus": []}):
        expected = {
            r["run_id"] for r in rows
            if all((r[k] in v) if isinstance(v, list) else r[k] == v for k, v in flt.items())
        }
        assert set(store.results(flt).column("run_id").to_pylist()) == expected, flt
    with pytest.raises(StoreError, match="unknown column 'vcpu'; did you mean 'vcpus'"):
        store.results({"vcpu": 64})
    with pytest.raises(StoreError, match="unknown sweep"):
        store.results(sweep="nope")
    df = store.to_pandas({"flush_mode": "hyperv-pv"}, sweep="sw")
    assert len(df) == len(runs) // 2 and set(df["flush_mode"]) == {"hyperv-pv"}


def test_paired_view_computes_benefits_from_the_baseline_rows(seeded_store, result_rows):
    store, runs = seeded_store
    rows = {r["run_id"]: r for r in result_rows.rows(runs)}
    paired = _by_run(store.sql("SELECT * FROM paired"))
    pvs = [r for r in runs if r.baseline_run_id]
    assert set(paired) == {r.run_id for r in pvs}
    for run in pvs:
        pv, base, got = rows[run.run_id], rows[run.baseline_run_id], paired[run.run_id]
        assert got["benefit_real"] == pytest.approx(base["real_s"] / pv["real_s"])
        assert got["benefit_sys"] == pytest.approx(base["sys_s"] / pv["sys_s"])
        assert got["benefit_p99"] == pytest.approx(base["lat_p99_us"] / pv["lat_p99_us"])
        assert got["benefit_ops"] == pytest.approx(pv["ops_per_s"] / base["ops_per_s"])
        assert got["overcommit"] == pytest.approx(pv["vcpus"] / pv["pcpus"])
        assert got["base_outcome"] == base["outcome"]


def test_aggregate_over_paired_matches_python(seeded_store, result_rows):
    store, runs = seeded_store
    rows = {r["run_id"]: r for r in result_rows.rows(runs)}
    table = store.sql(
        "SELECT vcpus, overcommit, avg(benefit_real) AS b, count(*) AS n FROM paired GROUP BY ALL ORDER BY vcpus"
    )
    expected: dict[int, list[float]] = {}
    for run in runs:
        if run.baseline_run_id:
            pv, base = rows[run.run_id], rows[run.baseline_run_id]
            expected.setdefault(pv["vcpus"], []).append(base["real_s"] / pv["real_s"])
    got = table.to_pylist()
    assert [g["vcpus"] for g in got] == sorted(expected)
    for g in got:
        assert g["n"] == len(expected[g["vcpus"]])
        assert g["b"] == pytest.approx(sum(expected[g["vcpus"]]) / g["n"])
        assert g["overcommit"] == pytest.approx(g["vcpus"] / 12)


def test_metadata_views_reflect_the_database(seeded_store):
    store, runs = seeded_store
    assert store.sql("SELECT count(*) AS n FROM runs WHERE status = 'done'").column("n").to_pylist() == [len(runs)]
    sweeps = store.sql("SELECT name, status, spec_text FROM sweeps").to_pylist()
    assert sweeps == [{"name": "sw", "status": "running", "spec_text": "name: sw\n"}]
    links = store.sql("SELECT count(*) AS n FROM sweep_runs WHERE sweep = 'sw'").column("n").to_pylist()
    assert links == [len(runs)]
    files = store.sql("SELECT sum(rows) AS n, count(*) AS f FROM files").to_pylist()
    assert files == [{"n": len(runs), "f": 2}]
    joined = store.sql(
        "SELECT r.node, count(*) AS n FROM results r JOIN runs USING (run_id) GROUP BY r.node ORDER BY r.node"
    ).to_pylist()
    assert joined == [{"node": "node-1", "n": 10}, {"node": "node-2", "n": 6}]
    store.set_sweep_status("sw", "done")
    assert store.sql("SELECT status FROM sweeps").column("status").to_pylist() == ["done"]  # read-your-writes


def test_empty_store_has_queryable_views(tmp_store):
    assert tmp_store.results().num_rows == 0
    assert tmp_store.sql("SELECT count(*) AS n FROM results").column("n").to_pylist() == [0]
    assert tmp_store.sql("SELECT count(*) AS n FROM paired").column("n").to_pylist() == [0]
    assert tmp_store.sql("SELECT count(*) AS n FROM runs").column("n").to_pylist() == [0]


def test_sweep_results_lists_shared_runs_under_each_sweep(seeded_store, result_rows):
    store, runs = seeded_store
    store.begin_sweep("rerun", "")
    store.add_runs("rerun", runs[:4])  # already computed by 'sw'
    got = store.sql("SELECT sweep, count(*) AS n FROM sweep_results GROUP BY sweep ORDER BY sweep").to_pylist()
    assert got == [{"sweep": "rerun", "n": 4}, {"sweep": "sw", "n": len(runs)}]
    assert set(store.results(sweep="rerun").column("sweep").to_pylist()) == {"sw"}  # computed by 'sw'


def test_compact_merges_files_and_keeps_results(seeded_store, result_rows):
    store, runs = seeded_store
    more = result_rows.pairs(4, start=20)
    store.add_runs("sw", more)
    for i in range(0, len(more), 2):
        store.commit_results("sw", result_rows.rows(more[i : i + 2]))
    before = store.results().sort_by("run_id")
    assert len(list(store.results_dir.glob("sweep=sw/*.parquet"))) == 6
    assert store.compact(target_rows=100) == 6
    files = list(store.results_dir.glob("sweep=sw/*.parquet"))
    assert len(files) == 1
    assert store.results().sort_by("run_id").equals(before.select(store.results().column_names))
    assert {r.result_file for r in store.runs(status="done")} == {str(files[0].relative_to(store.store_dir))}
    assert store.check() == []
    assert store.compact(target_rows=100) == 0


def test_compact_respects_target_rows_and_sweeps(tmp_store, result_rows):
    runs = result_rows.pairs(6)
    for sweep in ("a", "b"):
        tmp_store.begin_sweep(sweep, "")
    tmp_store.add_runs("a", runs[:8])
    tmp_store.add_runs("b", runs[8:])
    for i in range(0, 8, 2):
        tmp_store.commit_results("a", result_rows.rows(runs[i : i + 2]))
    for i in range(8, 12, 2):
        tmp_store.commit_results("b", result_rows.rows(runs[i : i + 2]))
    assert tmp_store.compact(target_rows=4) == 6  # a: 4 files -> 2, b: 2 -> 1
    counts = sorted(pq.ParquetFile(f).metadata.num_rows for f in tmp_store.store_dir.rglob("*.parquet"))
    assert counts == [4, 4, 4]
    assert {f.parent.name for f in tmp_store.store_dir.rglob("*.parquet")} == {"sweep=a", "sweep=b"}
    assert tmp_store.results().num_rows == 12


def test_compacting_one_sweep_leaves_the_other_sweeps_files_alone(tmp_store, result_rows):
    runs = result_rows.pairs(4)
    for sweep in ("a", "b"):
        tmp_store.begin_sweep(sweep, "")
    tmp_store.add_runs("a", runs[:4])
    tmp_store.add_runs("b", runs[4:])
    for i in range(0, 4, 2):
        tmp_store.commit_results("a", result_rows.rows(runs[i : i + 2]))
        tmp_store.commit_results("b", result_rows.rows(runs[4 + i : 6 + i]))
    before = tmp_store.results().sort_by("run_id")
    assert tmp_store.compact(sweep="a") == 2
    assert len(list(tmp_store.results_dir.glob("sweep=a/*.parquet"))) == 1
    assert len(list(tmp_store.results_dir.glob("sweep=b/*.parquet"))) == 2
    assert tmp_store.results().sort_by("run_id").equals(before.select(tmp_store.results().column_names))
    assert tmp_store.check() == []


def test_real_run_config_and_result_rows_round_trip(tmp_store):
    """The engine's own vocabulary: every RunConfig field and RunResult metric survives storage."""
    from dataclasses import fields

    from workers.config import RunConfig
    from workers.result import RunResult

    cfg = RunConfig()
    values = {"int": 7, "float": 0.5, "str": "ok"}
    metrics = {f.name: values[f.type if isinstance(f.type, str) else f.type.__name__] for f in fields(RunResult)}
    row = {"run_id": cfg.content_hash(), **cfg.to_dict(), **metrics, "baseline_run_id": None, "node": "n"}
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", [NewRun(cfg.content_hash(), cfg.to_dict())])
    tmp_store.commit_results("s", [row])
    got = tmp_store.results().to_pylist()[0]
    assert {k: got[k] for k in row} == row
    assert RunConfig.from_dict({k: got[k] for k in cfg.to_dict()}) == cfg


_scalars = {
    "bool": st.booleans(),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "float64": st.floats(allow_nan=False, width=64),
    "string": st.text(max_size=20),
}


@st.composite
def _batches(draw):
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
        lambda n: n not in ("run_id", "sweep", "schema_version", "node", "baseline_run_id")),
        min_size=1, max_size=6, unique=True))
    kinds = {n: draw(st.sampled_from(sorted(_scalars))) for n in names}
    n_rows = draw(st.integers(1, 12))
    rows = []
    for i in range(n_rows):
        row = {"run_id": f"run-{i}"}
        for name in names:
            row[name] = draw(st.none() | _scalars[kinds[name]])
        rows.append(row)
    return rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_batches())
def test_any_batch_of_flat_scalars_round_trips(tmp_path_factory, rows):
    """Property: whatever flat scalars go in (per-column types, NULLs anywhere) come out unchanged."""
    directory = tmp_path_factory.mktemp("prop")
    with open_store(directory / "store") as store:
        store.begin_sweep("p", "")
        store.add_runs("p", [NewRun(r["run_id"], {}) for r in rows])
        assert store.commit_results("p", rows) == len(rows)
        got = _by_run(store.results())
    for row in rows:
        for key, value in row.items():
            out = got[row["run_id"]].get(key)
            if isinstance(value, float):
                assert out == value or (math.isnan(value) and math.isnan(out))
            else:
                assert out == value, (key, value, out)


def test_an_arrow_table_is_stored_like_the_same_rows(any_store, result_rows):
    import pyarrow as pa

    runs = result_rows.pairs(6)
    any_store.begin_sweep("s", "")
    any_store.add_runs("s", runs)
    rows = result_rows.rows(runs)
    assert any_store.commit_results("s", rows[:4]) == 4
    assert any_store.commit_results("s", pa.Table.from_pylist(rows[4:8])) == 4
    batch = pa.RecordBatch.from_pylist([{**row, "node": "node-arrow"} for row in rows[8:]])
    assert any_store.commit_results("s", batch) == 4
    got = _by_run(any_store.results())
    for row in rows:
        for key, value in row.items():
            if key != "node":
                assert got[row["run_id"]][key] == value, key
    assert any_store.results().schema.field("vcpus").type == pa.int64()
    nodes = {r.run_id: r.node for r in any_store.runs("s", status="done")}
    assert {nodes[r["run_id"]] for r in rows[8:]} == {"node-arrow"} and len(nodes) == 12
    # exactly once, and the first of duplicate rows wins, as with dicts
    assert any_store.commit_results("s", pa.Table.from_pylist(rows[:2])) == 0
    more = result_rows.pairs(1, start=40)
    any_store.add_runs("s", more)
    first, second = result_rows.row(more[0], real_s=1.5), result_rows.row(more[0], real_s=2.5)
    assert any_store.commit_results("s", pa.Table.from_pylist([first, second, result_rows.row(more[1])])) == 2
    assert _by_run(any_store.results({"run_id": more[0].run_id}))[more[0].run_id]["real_s"] == 1.5


def test_an_arrow_table_is_held_to_the_stored_column_types(tmp_store, result_rows):
    import pyarrow as pa

    runs = result_rows.pairs(4)
    tmp_store.begin_sweep("s", "")
    tmp_store.add_runs("s", runs)
    tmp_store.commit_results("s", result_rows.rows(runs[:2]))
    table = pa.Table.from_pylist(result_rows.rows(runs[2:4]))
    narrow = table.set_column(table.schema.get_field_index("vcpus"), "vcpus", table.column("vcpus").cast(pa.int32()))
    narrow = narrow.set_column(narrow.schema.get_field_index("real_s"), "real_s", pa.array([3, 4], pa.int64()))
    narrow = narrow.append_column("warmup_s", pa.nulls(2))  # NULL throughout: typed by a later batch
    assert tmp_store.commit_results("s", narrow) == 2  # int32 -> int64, int -> float where floats are stored
    got = _by_run(tmp_store.results())
    assert [got[r.run_id]["real_s"] for r in runs[2:4]] == [3.0, 4.0]
    assert tmp_store.columns()["vcpus"] == "int64" and "warmup_s" not in tmp_store.columns()

    later = result_rows.pairs(1, start=20)
    tmp_store.add_runs("s", later)
    good = pa.Table.from_pylist(result_rows.rows(later))
    bad_ops = good.set_column(good.schema.get_field_index("ops"), "ops", pa.array([1.5, 2.5]))
    with pytest.raises(StoreError, match="'ops' holds int64 values in this store, got double"):
        tmp_store.commit_results("s", bad_ops)
    with pytest.raises(StoreError, match="'histogram' has type list<item: int64>.*flat scalars"):
        tmp_store.commit_results("s", good.append_column("histogram", pa.array([[1, 2], [3]])))
    with pytest.raises(StoreError, match="clashes with existing column 'vcpus'"):
        tmp_store.commit_results("s", good.append_column("VCPUS", pa.array([1, 2])))
    with pytest.raises(StoreError, match="column 'ops' more than once"):
        tmp_store.commit_results("s", good.append_column("ops", pa.array([1, 2])))
    with pytest.raises(StoreError, match="needs a 'run_id' column"):
        tmp_store.commit_results("s", good.drop_columns(["run_id"]))
    with pytest.raises(StoreError, match="run_id None"):
        tmp_store.commit_results("s", good.set_column(0, "run_id", pa.array([None, "x"], pa.string())))
    assert tmp_store.progress("s")["done"] == 4 and tmp_store.results().num_rows == 4  # nothing half-stored
    assert tmp_store.commit_results("s", good) == 2


def test_node_and_sweep_bookkeeping(any_store, result_rows):
    runs = result_rows.pairs(1)
    any_store.begin_sweep("s", "")
    any_store.add_runs("s", runs)
    any_store.mark_running([r.run_id for r in runs])
    any_store.record_failure(runs[0].run_id, "first try failed", node="node-7", final=False)
    rows = result_rows.rows(runs, sweep="some-other-sweep")
    del rows[0]["node"]  # no node in the row: the one recorded earlier stays
    rows[1]["node"] = None
    assert any_store.commit_results("s", rows) == 2
    by_id = {r.run_id: r for r in any_store.runs("s")}
    assert by_id[runs[0].run_id].node == "node-7" and by_id[runs[0].run_id].error is None
    assert by_id[runs[1].run_id].node is None
    assert set(any_store.results().column("sweep").to_pylist()) == {"s"}  # the partition, not the row's value


def test_numeric_looking_sweep_names_stay_text(tmp_store, result_rows):
    runs = result_rows.pairs(1)
    tmp_store.begin_sweep("2024", "")
    tmp_store.add_runs("2024", runs)
    tmp_store.commit_results("2024", result_rows.rows(runs))
    assert tmp_store.results(sweep="2024").column("sweep").to_pylist() == ["2024", "2024"]
    assert tmp_store.results({"sweep": "2024"}).num_rows == 2
