"""Result store: Parquet results and SQL metadata (see _base.ResultStore for the contract).

A notebook needs only this::

    from storage import open_store
    store = open_store("flushsweep-data", readonly=True)
    df = store.to_pandas({"flush_mode": "hyperv-pv"})
    store.sql("SELECT vcpus, overcommit, avg(benefit_real) FROM paired GROUP BY ALL")
"""

from typing import TYPE_CHECKING

from storage._base import NewRun, ResultStore, RunRecord, RunStatus, StoreError, SweepRecord, SweepStatus
from storage._rows import RESULTS_SCHEMA_VERSION
from storage.examples import EXAMPLES, ExampleQuery

if TYPE_CHECKING:
    from storage._location import StoreLocation, resolve_location
    from storage._store import ParquetSqlStore, open_store
    from storage.cli_options import add_store_args, store_from_args

#: Names whose modules import SQLAlchemy: loaded on first use, so a Ray worker that packs
#: result rows (``storage._rows``) does not pay for them (PEP 562).
_LAZY = {
    "StoreLocation": "storage._location", "resolve_location": "storage._location",
    "ParquetSqlStore": "storage._store", "open_store": "storage._store",
    "add_store_args": "storage.cli_options", "store_from_args": "storage.cli_options",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'storage' has no attribute {name!r}")


__all__ = [
    "EXAMPLES",
    "ExampleQuery",
    "NewRun",
    "ParquetSqlStore",
    "RESULTS_SCHEMA_VERSION",
    "ResultStore",
    "RunRecord",
    "RunStatus",
    "StoreError",
    "StoreLocation",
    "SweepRecord",
    "SweepStatus",
    "add_store_args",
    "open_store",
    "resolve_location",
    "store_from_args",
]
