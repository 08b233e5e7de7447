"""`flushsweep store check|compact|info` on a real store."""

from __future__ import annotations

import pytest

from storage import open_store
from sweep.cli import main as cli


@pytest.fixture
def store_args(store_dir, db_url, result_rows):
    with open_store(store_dir, db_url) as store:
        runs = result_rows.seed(store)
        extra = result_rows.pairs(3, start=30)
        store.add_runs("sw", extra)
        for run in extra:
            store.commit_results("sw", [result_rows.row(run)])
    return ["--store", str(store_dir), "--db", db_url], len(runs) + len(extra)


def test_check_on_a_healthy_store(capsys, store_args):
    args, rows = store_args
    assert cli(["store", "check", *args]) == 0
    assert capsys.readouterr().out.strip() == f"ok: 8 result file(s), {rows} row(s) match the manifest"


def test_compact_merges_and_reports(capsys, store_args, store_dir):
    args, rows = store_args
    assert cli(["store", "compact", "--target-rows", "1000", *args]) == 0
    assert capsys.readouterr().out.strip() == "merged 8 small file(s): 8 -> 1 result file(s)"
    assert len(list(store_dir.glob("results/sweep=sw/*.parquet"))) == 1
    assert cli(["store", "compact", *args]) == 0
    assert "nothing to compact" in capsys.readouterr().out
    assert cli(["store", "check", *args]) == 0
    assert f"{rows} row(s)" in capsys.readouterr().out
    assert cli(["store", "compact", "--target-rows", "1", *args]) == 2
    assert "--target-rows" in capsys.readouterr().err


def test_compact_one_sweep_leaves_the_others_alone(capsys, store_args, store_dir, db_url, result_rows):
    args, rows = store_args
    with open_store(store_dir, db_url) as store:
        store.begin_sweep("other", "")
        extra = result_rows.pairs(2, start=60)
        store.add_runs("other", extra)
        for run in extra:
            store.commit_results("other", [result_rows.row(run)])
    other_before = sorted(p.name for p in store_dir.glob("results/sweep=other/*.parquet"))
    assert len(other_before) == 4
    assert cli(["store", "compact", "--sweep", "sw", "--target-rows", "1000", *args]) == 0
    assert len(list(store_dir.glob("results/sweep=sw/*.parquet"))) == 1
    assert sorted(p.name for p in store_dir.glob("results/sweep=other/*.parquet")) == other_before
    capsys.readouterr()
    assert cli(["store", "compact", "--sweep", "nope", *args]) == 2
    err = capsys.readouterr().err
    assert "--sweep" in err and "'nope'" in err and "other" in err


def test_info_describes_the_store(capsys, store_args, store_dir):
    args, rows = store_args
    assert cli(["store", "info", *args]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert out["store"] == str(store_dir)
    assert out["files"] == "8" and out["rows"] == str(rows) and out["sweeps"] == "1"
    assert out["runs"] == f"done {rows}"


def test_check_reports_an_orphan_left_by_an_interrupted_commit(capsys, store_args, store_dir):
    args, _ = store_args
    stray = store_dir / "results" / "sweep=sw" / "part-interrupted.parquet"
    stray.write_bytes(b"PAR1")
    # a read-only look (as while a sweep runs) reports it but cannot know the commit is dead
    with open_store(args[1], args[3], readonly=True) as store:
        assert store.check() == ["file results/sweep=sw/part-interrupted.parquet is not in the manifest (an interrupted commit)"]
    # opening for writing takes the writer lock, so the file is a true orphan: removed
    assert cli(["store", "check", *args]) == 0
    out = capsys.readouterr().out
    assert "repaired on open: removed results/sweep=sw/part-interrupted.parquet" in out and not stray.exists()
