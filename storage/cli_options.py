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

from storage._location import DB_ENV, DEFAULT_STORE, STORE_ENV
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
        default=None,
        help=f"metadata database URL, sqlite:///FILE or postgresql://USER@HOST/DB; default ${DB_ENV} "
        "or sqlite:///<store>/meta.sqlite",
    )


def store_from_args(args: argparse.Namespace, *, readonly: bool = False) -> ParquetSqlStore:
    """Open the store named by ``--store``/``--db`` (or their environment and defaults).

    Raises:
        StoreError: one line, printed by the CLI with exit status 2.
    """
    return open_store(getattr(args, "store", None), getattr(args, "db", None), readonly=readonly)


__all__ = ["add_store_args", "store_from_args"]
