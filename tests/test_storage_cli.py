"""`flushsweep store check|compact|info` on a real store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert capsys.readouterr().out.strip() == "merged 8 small file(s) of sweep sw: 8 -> 1 result file(s)"  # its files
    assert len(list(store_dir.glob("results/sweep=sw/*.parquet"))) == 1
    assert sorted(p.name for p in store_dir.glob("results/sweep=other/*.parquet")) == other_before
    assert cli(["store", "compact", "--sweep", "sw", *args]) == 0
    assert capsys.readouterr().out.strip() == "nothing to compact: 1 result file(s) of sweep sw"
    assert cli(["store", "compact", *args]) == 0  # the whole store: sw's one file and other's four
    assert capsys.readouterr().out.strip() == "merged 4 small file(s): 5 -> 2 result file(s)"
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


def _status_rows(capsys, args) -> dict[str, dict[str, str]]:
    assert cli(["status", *args]) == 0
    header, _rule, *lines = [ln.split() for ln in capsys.readouterr().out.strip().splitlines()]
    return {line[0]: dict(zip(header, line)) for line in lines}  # the last column (created) has a space


def test_status_follows_the_runs_after_a_repair(capsys, store_args, store_dir, db_url):
    args, rows = store_args
    with open_store(store_dir, db_url) as store:
        store.set_sweep_status("sw", "done")
        victim = store.results_dir / store.runs("sw", status="done")[0].result_file.removeprefix("results/")
        lost = len([r for r in store.runs("sw") if r.result_file == store.runs("sw", status="done")[0].result_file])
    capsys.readouterr()
    assert _status_rows(capsys, args)["sw"]["status"] == "done"
    victim.write_bytes(victim.read_bytes()[:100])  # damaged: `store check --repair` requeues its runs

    assert cli(["store", "check", "--repair", *args]) == 0
    out = capsys.readouterr().out
    assert f"{lost} run(s) back to pending" in out
    assert "sweep sw is no longer done: status back to interrupted; `flushsweep resume sw`" in out
    row = _status_rows(capsys, args)["sw"]
    assert row["status"] == "interrupted" and row["pending"] == str(lost) and row["done"] == str(rows - lost)
    with open_store(store_dir, db_url, readonly=True) as store:
        assert store.find_sweep("sw").status == "interrupted"


def test_status_follows_the_runs_when_opening_finds_a_file_gone(capsys, store_args, store_dir, db_url):
    args, rows = store_args
    with open_store(store_dir, db_url) as store:
        store.set_sweep_status("sw", "done")
        rel = store.runs("sw", status="done")[0].result_file
    (store_dir / rel).unlink()
    with open_store(store_dir, db_url) as store:
        assert any("sweep sw is no longer done" in note for note in store.repairs)
        assert store.find_sweep("sw").status == "interrupted"
        assert store.progress("sw")["pending"] > 0


@pytest.mark.parametrize("url, warned", [
    ("postgresql://alice:s3cret@127.0.0.1:1/test", True),
    ("postgresql://alice@127.0.0.1:1/test?password=s3cret", True),
    ("postgresql://alice@127.0.0.1:1/test", False),
])
def test_a_password_on_the_command_line_is_warned_about_never_shown(capsys, store_dir, url, warned):
    assert cli(["store", "info", "--store", str(store_dir), "--db", url]) == 2  # nothing listens on port 1
    err = capsys.readouterr().err.splitlines()
    warnings = [ln for ln in err if "warning" in ln]
    assert len(warnings) == int(warned) and "s3cret" not in "\n".join(err)
    if warned:
        assert "ps" in warnings[0] and "FLUSHSWEEP_DB" in warnings[0]


def test_a_password_in_the_environment_is_not_warned_about(capsys, store_dir, monkeypatch):
    monkeypatch.setenv("FLUSHSWEEP_DB", "postgresql://alice:s3cret@127.0.0.1:1/test")
    store_dir.mkdir()
    assert cli(["store", "info", "--store", str(store_dir)]) == 2
    err = capsys.readouterr().err
    assert "warning" not in err and "s3cret" not in err and "***" in err


@settings(max_examples=100, deadline=None)
@given(user=st.text(min_size=1, max_size=12), password=st.text(max_size=12))
def test_property_the_warning_depends_on_the_password_and_never_shows_it(user, password):
    import contextlib
    import io
    from urllib.parse import quote

    from storage.cli_options import db_argument

    text = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@db.example:5432/fs"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert db_argument(text) == text  # the URL itself goes on unchanged
    assert bool(err.getvalue()) == bool(password)
    assert err.getvalue().count("\n") == int(bool(password))
    if len(password) >= 4:
        assert password not in err.getvalue() and quote(password, safe="") not in err.getvalue()
