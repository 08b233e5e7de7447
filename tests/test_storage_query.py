"""`flushsweep query` and store.sql(): read-only SQL, output formats, example queries."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import EXAMPLES, StoreError, open_store
from storage._query import check_read_only
from sweep.cli import main as cli

WRITES = {
    "COPY": "COPY results TO '{dir}/leak.csv'",
    "CREATE": "CREATE TABLE t AS SELECT * FROM results",
    "ATTACH": "ATTACH '{dir}/meta.sqlite' AS m",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "INSERT": "INSERT INTO results VALUES (1)",
    "UPDATE": "UPDATE runs SET status = 'done'",
    "DELETE": "DELETE FROM runs",
    "DROP": "DROP VIEW results",
    "ALTER": "ALTER VIEW results RENAME TO r",
    "SET": "SET threads = 1",
    "EXPORT": "EXPORT DATABASE '{dir}/dump'",
    "PRAGMA": "PRAGMA enable_profiling",
    "CALL": "CALL checkpoint()",
    "DETACH": "DETACH memory",
    "VACUUM": "VACUUM",
    "BEGIN": "BEGIN TRANSACTION",
}


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_writing_statements_are_refused_by_name(seeded_sqlite_store, kind):
    store, _ = seeded_sqlite_store
    before = sorted(p.name for p in store.store_dir.rglob("*"))
    with pytest.raises(StoreError, match=f"^query is read-only: {kind} statements are refused"):
        store.sql(WRITES[kind].format(dir=store.store_dir))
    assert sorted(p.name for p in store.store_dir.rglob("*")) == before


@pytest.mark.parametrize("query", [
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    "/* harmless? */ COPY results TO 'x.parquet'",
    "-- comment\nCREATE VIEW v AS SELECT 1",
    "SELECT 1; DROP VIEW results",
    "FORCE INSTALL httpfs",
])
def test_disguised_writes_are_refused(seeded_sqlite_store, query):
    store, _ = seeded_sqlite_store
    with pytest.raises(StoreError, match="read-only|statements"):
        store.sql(query)


def test_reads_outside_the_store_are_blocked(seeded_sqlite_store):
    store, _ = seeded_sqlite_store
    with pytest.raises(StoreError, match="query failed"):
        store.sql("SELECT * FROM read_csv('/etc/passwd')")


def test_read_forms_are_allowed(seeded_store):
    store, runs = seeded_store
    assert store.sql("FROM results SELECT count(*) AS n").column("n").to_pylist() == [len(runs)]
    assert store.sql("WITH x AS (SELECT vcpus FROM results) SELECT count(*) AS n FROM x").num_rows == 1
    assert store.sql("DESCRIBE results").num_rows > 10
    assert store.sql("SHOW TABLES").num_rows >= 1
    assert store.sql("EXPLAIN SELECT * FROM paired").num_rows >= 1
    assert store.sql("SELECT run_id FROM results WHERE vcpus > 32 ORDER BY run_id;").num_rows > 0


def test_bad_sql_is_one_line(seeded_sqlite_store):
    store, _ = seeded_sqlite_store
    for query, pattern in [("SELEC 1", "does not parse"), ("SELECT nope FROM results", "query failed"),
                           ("", "empty")]:
        with pytest.raises(StoreError, match=pattern) as info:
            store.sql(query)
        assert "\n" not in str(info.value)


_write_words = st.sampled_from(["COPY results TO 'f.csv'", "CREATE TABLE t (a INT)", "INSTALL json", "LOAD json",
                                "ATTACH 'x.db'", "DROP TABLE results", "SET memory_limit = '1GB'",
                                "INSERT INTO t VALUES (1)", "EXPORT DATABASE 'd'", "DELETE FROM runs"])
_noise = st.sampled_from(["", " ", "\n", "  \t", "/* c */ ", "-- c\n"])


@settings(max_examples=60, deadline=None)
@given(stmt=_write_words, before=_noise, after=_noise, upper=st.booleans())
def test_property_any_writing_statement_is_refused(stmt, before, after, upper):
    text = before + (stmt.upper() if upper else stmt.lower()) + after
    with pytest.raises(StoreError, match="^query is read-only: [A-Z ]+ statements are refused"):
        check_read_only(text)


@settings(max_examples=60, deadline=None)
@given(cols=st.lists(st.sampled_from(["vcpus", "pcpus", "real_s", "count(*)", "avg(sys_s)", "1"]), min_size=1,
                     max_size=4),
       view=st.sampled_from(["results", "paired", "runs", "sweeps"]), limit=st.none() | st.integers(0, 100),
       before=_noise)
def test_property_selects_pass_the_check(cols, view, limit, before):
    text = f"{before}SELECT {', '.join(cols)} FROM {view}" + (f" LIMIT {limit}" if limit is not None else "")
    check_read_only(text)  # does not raise


def test_example_queries_run(seeded_store):
    store, _ = seeded_store
    store.set_sweep_status("sw", "done")
    for example in EXAMPLES:
        table = store.sql(example.sql.replace("'my-sweep'", "'sw'"))
        assert table.num_columns >= 2, example.title
    crashes = store.sql(EXAMPLES[2].sql).to_pylist()
    expected = store.sql("SELECT count(*) AS n FROM results WHERE outcome = 'crash'").column("n")[0].as_py()
    assert sum(c["crashes"] for c in crashes) == expected


# --- the CLI ----------------------------------------------------------------------------


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def cli_store(store_dir, sqlite_url, result_rows):
    runs = result_rows.pairs(4)
    with open_store(store_dir, sqlite_url) as store:
        store.begin_sweep("sw", "")
        store.add_runs("sw", runs)
        store.commit_results("sw", result_rows.rows(runs))
    return ["--store", str(store_dir), "--db", sqlite_url], result_rows.rows(runs)


def test_cli_query_table_csv_json(capsys, cli_store):
    args, rows = cli_store
    q = "SELECT run_id, vcpus, real_s FROM results ORDER BY run_id"
    expected = sorted((r["run_id"], r["vcpus"], r["real_s"]) for r in rows)

    rc, out, _ = _run(capsys, "query", q, *args)
    assert rc == 0 and out.splitlines()[0].split() == ["run_id", "vcpus", "real_s"]
    assert f"({len(rows)} rows)" in out and expected[0][0] in out

    rc, out, _ = _run(capsys, "query", q, "--format", "csv", *args)
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [(r["run_id"], int(r["vcpus"]), float(r["real_s"])) for r in parsed] == expected

    rc, out, _ = _run(capsys, "query", q, "--format", "json", *args)
    assert rc == 0 and [(r["run_id"], r["vcpus"], r["real_s"]) for r in json.loads(out)] == expected


def test_cli_query_out_file_and_parquet(capsys, cli_store, tmp_path):
    args, rows = cli_store
    out_file = tmp_path / "paired.parquet"
    rc, _, err = _run(capsys, "query", "SELECT * FROM paired", "--format", "parquet", "--out", str(out_file), *args)
    assert rc == 0 and "wrote 4 row(s)" in err
    table = pq.read_table(out_file)
    assert table.num_rows == len(rows) // 2 and "benefit_real" in table.column_names
    rc, _, err = _run(capsys, "query", "SELECT 1", "--format", "parquet", *args)
    assert rc == 2 and "--out" in err
    rc, _, err = _run(capsys, "query", "SELECT 1", "--out", str(tmp_path / "no" / "dir.csv"), *args)
    assert rc == 2 and "does not exist" in err


def test_cli_query_refuses_writes_with_one_line(capsys, cli_store):
    args, _ = cli_store
    rc, out, err = _run(capsys, "query", "COPY results TO 'x.csv'", *args)
    assert rc == 2 and out == ""
    assert err.strip() == (
        "flushsweep query: error: query is read-only: COPY statements are refused; use SELECT over "
        "results, paired, sweep_results, runs, sweeps, sweep_runs, files"
    )


def test_cli_query_examples_and_missing_sql(capsys, store_dir):
    rc, out, _ = _run(capsys, "query", "--examples")
    assert rc == 0 and out.count("SELECT") >= 3 and "paired" in out and "crash" in out
    rc, _, err = _run(capsys, "query", "--store", str(store_dir))
    assert rc == 2 and "--examples" in err


def test_cli_query_on_a_missing_store_says_where(capsys, tmp_path):
    rc, _, err = _run(capsys, "query", "SELECT 1", "--store", str(tmp_path / "nothing-here"))
    assert rc == 2 and "no store at" in err and len(err.strip().splitlines()) == 1


def test_cli_store_env_variables(capsys, cli_store, monkeypatch):
    args, rows = cli_store
    monkeypatch.setenv("FLUSHSWEEP_STORE", args[1])
    monkeypatch.setenv("FLUSHSWEEP_DB", args[3])
    rc, out, _ = _run(capsys, "query", "SELECT count(*) AS n FROM results", "--format", "csv")
    assert rc == 0 and list(csv.DictReader(io.StringIO(out))) == [{"n": str(len(rows))}]
