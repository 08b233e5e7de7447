"""The store's layout: the Parquet dataset in <store>/results/, readable by any Parquet reader, and the
migration (revision 0004) that moves a store written before it, surviving a SIGKILL midway."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import StoreError, open_store
from storage._location import parse_db_url
from storage._migrate import head_revision
from fault_injection import pause_at, sigkill
from sweep.cli import main as cli

def _sorted(table) -> list[dict]:
    return table.sort_by("run_id").to_pylist()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(parse_db_url(url), poolclass=sa.pool.NullPool)


def _write_store(store_dir: Path, db_url: str, result_rows, sweeps=("sw", "other", "third")) -> list[dict]:
    """A store with a few sweeps (two files each), returned as its result rows."""
    with open_store(store_dir, db_url) as store:
        for k, name in enumerate(sweeps):
            runs = result_rows.pairs(4, start=10 * k)
            store.begin_sweep(name, f"name: {name}\n")
            store.add_runs(name, runs)
            store.commit_results(name, result_rows.rows(runs[:4]))
            store.commit_results(name, result_rows.rows(runs[4:]))
        store.add_runs("sw", result_rows.pairs(1, start=90))  # and pending runs, which have no file
        return _sorted(store.results())


def _to_old_layout(store_dir: Path, db_url: str) -> None:
    """Turn a store into what flushsweep wrote before revision 0004, independently of storage/_layout:
    partitions in the store root, manifest paths relative to it without "results/", revision 0003."""
    for part in sorted((store_dir / "results").iterdir()):
        part.rename(store_dir / part.name)
    (store_dir / "results").rmdir()
    engine = _engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE fs_files SET path = substr(path, 9)"))
        conn.execute(sa.text("UPDATE fs_runs SET result_file = substr(result_file, 9) WHERE result_file IS NOT NULL"))
        conn.execute(sa.text("UPDATE fs_alembic_version SET version_num = '0003'"))
    engine.dispose()


def _manifest(db_url: str) -> tuple[set[str], set[str], str]:
    """(fs_files paths, result files the done runs name, schema revision), read straight from SQL."""
    engine = _engine(db_url)
    with engine.connect() as conn:
        paths = set(conn.execute(sa.text("SELECT path FROM fs_files")).scalars())
        named = set(conn.execute(sa.text("SELECT DISTINCT result_file FROM fs_runs WHERE status = 'done'")).scalars())
        revision = conn.execute(sa.text("SELECT version_num FROM fs_alembic_version")).scalar_one()
    engine.dispose()
    return paths, named, revision


def _parquet_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_new_stores_keep_the_dataset_apart_from_everything_else(store_dir, sqlite_url, result_rows):
    with open_store(store_dir) as store:
        result_rows.seed(store)
        assert store.results_dir == store_dir / "results"
    assert {p.name for p in (store_dir / "results").iterdir()} == {"sweep=sw"}
    assert not [p for p in store_dir.iterdir() if p.name.startswith("sweep=")]
    assert (store_dir / "meta.sqlite").exists() and (store_dir / "flushsweep-store.json").exists()


def test_an_old_layout_store_is_migrated_and_any_parquet_reader_reads_it(store_dir, db_url, result_rows, capsys):
    import duckdb
    import pandas as pd
    import pyarrow.dataset as ds

    before = _write_store(store_dir, db_url, result_rows)
    _to_old_layout(store_dir, db_url)
    old_files = _parquet_files(store_dir)
    assert len(old_files) == 6 and all(f.startswith("sweep=") for f in old_files)
    with pytest.raises(StoreError, match="older schema"):  # a read-only open does not migrate
        open_store(store_dir, db_url, readonly=True)

    with open_store(store_dir, db_url) as store:  # the first open for writing migrates
        assert _sorted(store.results()) == before and store.check() == []
        assert store.progress("sw") == {"pending": 2, "running": 0, "done": 8, "failed": 0}
    assert _parquet_files(store_dir) == [f"results/{f}" for f in old_files]  # moved, not copied
    paths, named, revision = _manifest(db_url)
    assert paths == named == {f"results/{f}" for f in old_files} and revision == head_revision()

    ids = sorted(r["run_id"] for r in before)
    results = store_dir / "results"
    frame = pd.read_parquet(results)
    assert sorted(frame["run_id"]) == ids and set(frame["sweep"].astype(str)) == {"sw", "other", "third"}
    assert pd.read_parquet(results, filters=[("sweep", "=", "other")])["run_id"].nunique() == 8
    dataset = ds.dataset(results, format="parquet", partitioning="hive")
    assert dataset.count_rows() == len(before)
    assert sorted(dataset.to_table(columns=["run_id"]).column("run_id").to_pylist()) == ids
    con = duckdb.connect()
    query = f"SELECT run_id, sweep FROM read_parquet('{results}/**/*.parquet', hive_partitioning = 1)"
    rows = con.execute(query).fetchall()
    con.close()
    assert sorted(r[0] for r in rows) == ids
    assert {r[1] for r in rows} == {"sw", "other", "third"}

    args = ["--store", str(store_dir), "--db", db_url]
    assert cli(["query", "SELECT count(*) AS n FROM results", "--format", "csv", *args]) == 0
    assert capsys.readouterr().out.replace('"', "").split() == ["n", str(len(before))]
    with open_store(store_dir, db_url, readonly=True) as store:
        assert store.sql("SELECT count(*) AS n FROM paired").column("n")[0].as_py() == len(before) // 2
        assert set(store.sql("SELECT path FROM files").column("path").to_pylist()) == paths
        assert store.sql("SELECT count(*) AS n FROM sweep_results WHERE sweep = 'other'").column("n")[0].as_py() == 8


def test_a_directory_is_not_rearranged_for_a_database_it_does_not_belong_to(tmp_path, result_rows):
    a_dir, a_db = tmp_path / "a", f"sqlite:///{tmp_path / 'a.sqlite'}"
    _write_store(a_dir, a_db, result_rows)
    _to_old_layout(a_dir, a_db)
    old_files = _parquet_files(a_dir)
    with pytest.raises(StoreError, match="holds results recorded in database"):
        open_store(a_dir, f"sqlite:///{tmp_path / 'b.sqlite'}")
    assert _parquet_files(a_dir) == old_files and not (a_dir / "results").exists()


# --- a migration killed midway -------------------------------------------------------------------

@pytest.mark.parametrize("point", ["layout-after-move", "layout-before-commit"])
def test_a_migration_killed_midway_finishes_on_the_next_open(point, tmp_path, store_dir, db_url, result_rows):
    before = _write_store(store_dir, db_url, result_rows)
    _to_old_layout(store_dir, db_url)
    old_files = _parquet_files(store_dir)

    note = pause_at(point, tmp_path, "open", store_dir, db_url)  # opening migrates; SIGKILL it at the point
    sigkill(note["proc"])
    everywhere = _parquet_files(store_dir)
    in_root = [f for f in everywhere if not f.startswith("results/")]
    in_results = [f for f in everywhere if f.startswith("results/")]
    assert sorted(Path(f).name for f in everywhere) == sorted(Path(f).name for f in old_files)  # each once
    if point == "layout-after-move":
        assert note["partition"] == "sweep=other" and in_results and in_root  # one partition moved, two not
    else:
        assert not in_root  # all moved; the paths were rewritten but never committed
    paths, _, revision = _manifest(db_url)
    assert revision == "0003" and paths == set(old_files)
    with pytest.raises(StoreError, match="older schema"):
        open_store(store_dir, db_url, readonly=True)

    with open_store(store_dir, db_url) as store:  # running it again finishes the job
        after = _sorted(store.results())
        assert after == before and len({r["run_id"] for r in after}) == len(after)
        assert store.check() == [] and not store.repairs
        assert store.progress("other")["done"] == 8
    assert _parquet_files(store_dir) == [f"results/{f}" for f in old_files]
    paths, named, revision = _manifest(db_url)
    assert paths == named == {f"results/{f}" for f in old_files} and revision == head_revision()


def test_a_partition_left_in_both_places_is_merged_without_duplicates(store_dir, sqlite_url, result_rows):
    """The root and results/ both hold sweep=sw (files moved one by one, then a crash): the union
    is kept, an identical copy in both places counts once."""
    before = _write_store(store_dir, sqlite_url, result_rows, sweeps=("sw",))
    _to_old_layout(store_dir, sqlite_url)
    first, second = sorted((store_dir / "sweep=sw").glob("*.parquet"))
    (store_dir / "results" / "sweep=sw").mkdir(parents=True)
    first.rename(store_dir / "results" / "sweep=sw" / first.name)
    shutil.copy2(second, store_dir / "results" / "sweep=sw" / second.name)
    with open_store(store_dir, sqlite_url) as store:
        assert _sorted(store.results()) == before and store.check() == []
    assert not (store_dir / "sweep=sw").exists()
    assert _parquet_files(store_dir) == sorted(f"results/sweep=sw/{p.name}" for p in (first, second))
