"""Bring a metadata database to the schema this code expects, or refuse with a reason.

Opening a store for writing upgrades it (Alembic, inside the caller's transaction
and, on PostgreSQL, under an advisory lock so two processes never migrate at once).
A database stamped with a revision this code does not know was written by a newer
flushsweep: we stop before touching anything.

Developers: ``python -m storage._migrate revision -m "message"`` autogenerates a
new revision against a scratch SQLite database at head.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError

from storage._base import StoreError
from storage._location import StoreLocation
from storage._models import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Arbitrary constant key for pg_advisory_xact_lock while migrating.
_PG_MIGRATION_LOCK = 0x666C7573  # "flus"


def alembic_config(
    url: str | None = None, connection: sa.Connection | None = None, location: StoreLocation | None = None
) -> Config:
    """Alembic's configuration; ``location`` is the store, for revisions that move its files (0004)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    if location is not None:
        cfg.attributes["store_location"] = location
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "storage/migrations has no revisions"
    return head


def current_revision(conn: sa.Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    return heads[0] if heads else None


def prepare_schema(conn: sa.Connection, *, readonly: bool, location: StoreLocation) -> None:
    """Check the revision of ``conn``'s database and upgrade it to head unless ``readonly``.

    Args:
        conn: a connection inside a transaction (the upgrade commits with it).
        location: the store (for messages, and for revisions that move its files).

    Raises:
        StoreError: the database is newer than this code, or (read-only) older.
    """
    if conn.dialect.name == "postgresql" and not readonly:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    where = str(location.directory)
    script = ScriptDirectory.from_config(alembic_config())
    current = current_revision(conn)
    head = script.get_current_head()
    if current == head:
        return
    if current is not None and not _known(script, current):
        raise StoreError(
            f"store {where} was written by a newer flushsweep (schema revision {current!r} is unknown to this "
            "version); upgrade flushsweep to open it, nothing was changed"
        )
    if readonly:
        raise StoreError(
            f"store {where} has an older schema (revision {current!r}, this flushsweep needs {head!r}) and was "
            "opened read-only; run `flushsweep store check` once where the store is writable to upgrade it"
        )
    command.upgrade(alembic_config(connection=conn, location=location), "head")


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False


def _autogenerate(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scratch.sqlite"
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage._migrate")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rev = sub.add_parser("revision", help="autogenerate a new migration from storage/_models.py")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    _autogenerate(args.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "prepare_schema"]
