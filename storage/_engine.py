"""SQLAlchemy engines for the metadata database, and turning driver errors into StoreErrors.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read lock
(SQLAlchemy's documented pysqlite recipe). PostgreSQL gets a connect timeout so an
unreachable server fails in seconds, not minutes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage._base import StoreError
from storage._location import StoreLocation

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
SQLITE_CACHE_KIB = 65_536


def create_store_engine(location: StoreLocation, *, readonly: bool) -> Engine:
    """An engine for ``location.url``; nothing connects until first use."""
    if location.is_sqlite:
        kwargs: dict[str, Any] = {}
        if readonly:
            kwargs["creator"] = _readonly_sqlite_creator(location.url.database or "")
        engine = sa.create_engine(
            location.url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine, readonly=readonly)
        return engine
    engine = sa.create_engine(
        location.url,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "flushsweep"},
        pool_pre_ping=True,
    )
    if readonly:

        @event.listens_for(engine, "begin")
        def _read_only(conn: sa.Connection) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    return engine


def _readonly_sqlite_creator(path: str) -> Callable[[], sqlite3.Connection]:
    """Read-only (``mode=ro``: SQLite creates no database). If that fails (a WAL database in a
    directory we cannot write, where SQLite cannot create its shared-memory file), read the
    file as immutable: nobody can be writing it then, since a writer needs that directory
    too, unless a write-ahead log holds commits that immutable reading would not see."""

    def connect() -> sqlite3.Connection:
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        uri = f"file:{quote(path)}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
            conn.execute("PRAGMA schema_version").fetchone()
            return conn
        except sqlite3.OperationalError:
            wal = Path(path + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise sqlite3.OperationalError(
                    f"{path}-wal holds commits not yet in the database and the directory is read-only; "
                    "open the store once where it is writable"
                ) from None
            return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, check_same_thread=False)

    return connect


def _configure_sqlite(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see "begin" below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")  # random run_id keys need a warm B-tree
        if not readonly:
            cur.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against process crashes in WAL mode; an OS crash may
            # lose the last commits, which open-time repair turns back into pending runs.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def connect_error(location: StoreLocation, exc: BaseException) -> StoreError:
    """A one-line StoreError for a database that cannot be opened or reached."""
    detail = first_line(getattr(exc, "orig", None) or exc)
    if location.is_sqlite:
        return StoreError(
            f"cannot open SQLite database {location.url.database}: {detail}; "
            "check the path and permissions, or pass another --db / FLUSHSWEEP_DB"
        )
    return StoreError(
        f"cannot connect to database {location.safe_db_url}: {detail}; "
        "start the server or fix --db / FLUSHSWEEP_DB"
    )


def first_line(exc: BaseException | str) -> str:
    """The first non-empty line of an error, without SQLAlchemy's background links."""
    for line in str(exc).strip().splitlines():
        line = line.strip()
        if line and not line.startswith("(Background on this error"):
            return line
    return type(exc).__name__ if isinstance(exc, BaseException) else "unknown error"


__all__ = ["connect_error", "create_store_engine", "first_line"]
