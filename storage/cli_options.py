"""The ``--store`` / ``--db`` options every store-using command shares.

Usage in a command module::

    from storage.cli_options import add_store_args, store_from_args

    def register(subparsers):
        p = subparsers.add_parser("report", help=...)
        add_store_args(p)
        p.set_defaults(func=run)

    def run(args):
        with store_from_args(args, readonly=True) as store:
            ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from storage._files import is_writable
from storage._location import DB_ENV, DEFAULT_STORE, STORE_ENV, resolve_location
from storage._store import ParquetSqlStore, open_store


def add_store_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("store")
    group.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help=f"store directory (results as Parquet); default ${STORE_ENV} or ./{DEFAULT_STORE}",
    )
    group.add_argument(
        "--db",
        metavar="URL",
        type=db_argument,
        default=None,
        help=f"metadata database URL, sqlite:///FILE or postgresql://USER@HOST/DB; default ${DB_ENV} "
        "or sqlite:///<store>/meta.sqlite",
    )


def db_argument(text: str) -> str:
    """``--db URL`` as given, with a one-line warning on stderr when it carries a password:
    every user of the machine can read a command line (``ps``), but not another's environment."""
    if _has_password(text):
        print(
            f"flushsweep: warning: the --db URL holds a password, which other users can see in `ps`; "
            f"put the URL in {DB_ENV} instead",
            file=sys.stderr,
        )
    return text


def _has_password(text: str) -> bool:
    try:
        url = make_url(text)
    except Exception:  # noqa: BLE001 - a malformed URL is reported, in one line, when the store opens
        return False
    return bool(url.password) or any(key.lower() == "password" for key in url.query)


def store_is_writable(args: argparse.Namespace) -> bool:
    """Whether the store the arguments name can be opened for writing: its directory and, for
    SQLite, the database file and its directory (read-only mounts and permissions alike)."""
    location = resolve_location(getattr(args, "store", None), getattr(args, "db", None))
    paths = [location.directory]
    if location.is_sqlite and location.url.database:
        database = Path(location.url.database)
        paths += [database, database.parent]
    return is_writable(*paths)


def store_from_args(args: argparse.Namespace, *, readonly: bool = False) -> ParquetSqlStore:
    """Open the store named by ``--store``/``--db`` (or their environment and defaults).

    Raises:
        StoreError: one line, printed by the CLI with exit status 2.
    """
    return open_store(getattr(args, "store", None), getattr(args, "db", None), readonly=readonly)


__all__ = ["add_store_args", "db_argument", "store_from_args", "store_is_writable"]
