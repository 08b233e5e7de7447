"""The metadata schema: Alembic migrations agree with the models, and the store shares its database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage import StoreError, open_store
from storage._location import parse_db_url, resolve_location
from storage._migrate import alembic_config, head_revision
from storage._models import VERSION_TABLE, Base, comparable_on


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(parse_db_url(url), poolclass=sa.pool.NullPool)


def test_opening_applies_migrations_and_they_match_the_models(store_dir, db_url):
    with open_store(store_dir, db_url):
        pass
    engine = _engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "version_table": VERSION_TABLE,
            "include_name": lambda name, type_, _p: type_ != "table" or name.startswith("fs_"),
            "include_object": comparable_on(conn.dialect.name),  # e.g. no PostgreSQL hash index on SQLite
            "compare_type": True,
        })
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} | {VERSION_TABLE} <= tables
    assert all(t.startswith("fs_") for t in tables)  # nothing that could clash with Optuna's tables


def test_migrations_downgrade_and_upgrade_cleanly(db_url):
    engine = _engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "head")
    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), "base")
    with engine.connect() as conn:
        assert not [t for t in sa.inspect(conn).get_table_names() if t != VERSION_TABLE]
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "head")
    with engine.connect() as conn:
        assert "fs_runs" in sa.inspect(conn).get_table_names()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(store_dir):
    with open_store(store_dir) as store:
        with store._engine.connect() as conn:  # noqa: SLF001 - checking the pragmas on a live connection
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (store_dir / "meta.sqlite").exists()


def test_an_optuna_study_shares_the_store_database(store_dir, db_url, result_rows):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with open_store(store_dir, db_url) as store:
        runs = result_rows.seed(store)
        study = optuna.create_study(study_name="search-1", storage=store.db_url, direction="maximize")
        study.optimize(lambda t: -((t.suggest_float("x", -2, 2) - 1) ** 2), n_trials=3)
    with open_store(store_dir, db_url) as store:
        assert store.results().num_rows == len(runs) and store.check() == []
        assert len(optuna.load_study(study_name="search-1", storage=store.db_url).trials) == 3


def test_files_from_before_schema_signatures_are_backfilled(store_dir, sqlite_url, result_rows):
    """Revision 0002 added fs_files.schema_hash; files listed before it get theirs on the next open."""
    with open_store(store_dir, sqlite_url) as store:
        result_rows.seed(store)
        before = store.results().sort_by("run_id")
    engine = _engine(sqlite_url)
    with engine.begin() as conn:
        signatures = dict(conn.exec_driver_sql("SELECT path, schema_hash FROM fs_files").all())
        conn.exec_driver_sql("UPDATE fs_files SET schema_hash = NULL")
    with open_store(store_dir, sqlite_url, readonly=True) as store:  # still readable meanwhile
        assert store.results().sort_by("run_id").equals(before)
    with open_store(store_dir, sqlite_url) as store:
        assert store.results().sort_by("run_id").equals(before)
    with engine.begin() as conn:
        assert dict(conn.exec_driver_sql("SELECT path, schema_hash FROM fs_files").all()) == signatures
    assert len(set(signatures.values())) == 1 and None not in signatures.values()


def test_an_old_store_is_upgraded_on_open(store_dir, db_url, result_rows):
    """Down to the first revision (runs and their configs in one table) and back up, data and all."""
    with open_store(store_dir, db_url) as store:
        result_rows.seed(store)
        store.add_runs("sw", result_rows.pairs(1, start=30))  # pending runs too
        runs_before = sorted(store.runs(), key=lambda r: r.run_id)
    engine = _engine(db_url)
    with engine.begin() as conn:  # the store's location: revision 0004 moves its files back to the root
        command.downgrade(alembic_config(connection=conn, location=resolve_location(store_dir, db_url)), "0001")
    assert not (store_dir / "results").exists() and len(list(store_dir.glob("sweep=sw/*.parquet"))) == 2
    with pytest.raises(StoreError, match="older schema.*flushsweep store check"):
        open_store(store_dir, db_url, readonly=True)
    with open_store(store_dir, db_url) as store:
        assert store.results().num_rows == 16 and store.check() == []
        assert sorted(store.runs(), key=lambda r: r.run_id) == runs_before
    with engine.connect() as conn:
        assert MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision() == head_revision()
    engine.dispose()
