"""Where a store lives: its directory and its metadata database URL.

Resolution order is argument, then environment (``FLUSHSWEEP_STORE``,
``FLUSHSWEEP_DB``), then default (``./flushsweep-data`` and a SQLite file inside
it). Every problem becomes a one-line ``StoreError`` that names the setting to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from storage._base import StoreError

STORE_ENV = "FLUSHSWEEP_STORE"
DB_ENV = "FLUSHSWEEP_DB"
DEFAULT_STORE = "flushsweep-data"
SQLITE_FILE = "meta.sqlite"

#: What a user may write before ``://`` and the SQLAlchemy driver it means.
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
_DB_HINT = "use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE (--db or FLUSHSWEEP_DB)"


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A resolved store: an absolute directory and a SQLAlchemy URL."""

    directory: Path
    url: URL

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def db_url(self) -> str:
        """The URL with its password, for tools that connect themselves (Optuna)."""
        return self.url.render_as_string(hide_password=False)

    @property
    def safe_db_url(self) -> str:
        """The URL for messages: password masked."""
        return self.url.render_as_string(hide_password=True)


def resolve_location(store: str | os.PathLike[str] | None = None, db: str | None = None) -> StoreLocation:
    """Resolve ``store``/``db`` (or their environment variables and defaults).

    Raises:
        StoreError: the database URL is malformed or names an unsupported database.
    """
    raw_store = store if store not in (None, "") else os.environ.get(STORE_ENV) or DEFAULT_STORE
    directory = Path(raw_store).expanduser().absolute()
    raw_db = db if db not in (None, "") else os.environ.get(DB_ENV) or None
    if raw_db is None:
        url = URL.create("sqlite", database=str(directory / SQLITE_FILE))
    else:
        url = parse_db_url(raw_db)
    return StoreLocation(directory=directory, url=url)


def parse_db_url(text: str) -> URL:
    """Parse and normalise a database URL (``postgresql://`` uses psycopg 3).

    Raises:
        StoreError: one line naming the problem and the accepted forms.
    """
    shown = text if len(text) <= 80 else text[:77] + "..."
    shown = shown.replace("\n", " ")
    if "://" not in text:
        raise StoreError(f"database URL {shown!r} is not a URL; {_DB_HINT}")
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreError(f"database URL {shown!r} is malformed; {_DB_HINT}") from None
    except ValueError:  # SQLAlchemy parses the port with int()
        raise StoreError(f"database URL {shown!r} has a port that is not a number; {_DB_HINT}") from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise StoreError(f"database URL {shown!r}: unsupported database {url.drivername!r}; {_DB_HINT}")
    url = url.set(drivername=driver)
    if driver == "sqlite":
        if not url.database or url.database == ":memory:" or url.database.startswith("file::memory:"):
            raise StoreError(f"database URL {shown!r} is in memory and would lose the metadata; use sqlite:///PATH")
        if url.query:
            raise StoreError(f"database URL {shown!r}: SQLite options are not supported; use plain sqlite:///PATH")
        url = url.set(database=str(Path(url.database).expanduser().absolute()))
    else:
        if not url.host and "host" not in url.query:
            raise StoreError(f"database URL {shown!r} names no server; {_DB_HINT}")
        if not url.database:
            raise StoreError(f"database URL {shown!r} names no database; {_DB_HINT}")
    return url


__all__ = ["DB_ENV", "DEFAULT_STORE", "STORE_ENV", "StoreLocation", "parse_db_url", "resolve_location"]
