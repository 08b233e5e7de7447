"""Result store: Parquet results and SQL metadata (see _base.ResultStore for the contract).

A notebook needs only this::

    from storage import open_store
    store = open_store("flushsweep-data", readonly=True)
    df = store.to_pandas({"flush_mode": "hyperv-pv"})
    store.sql("SELECT vcpus, overcommit, avg(benefit_real) FROM paired GROUP BY ALL")
"""

from storage._base import NewRun, ResultStore, RunRecord, RunStatus, StoreError, SweepRecord, SweepStatus
from storage._location import StoreLocation, resolve_location
from storage._rows import RESULTS_SCHEMA_VERSION
from storage._store import ParquetSqlStore, open_store
from storage.cli_options import add_store_args, store_from_args
from storage.examples import EXAMPLES, ExampleQuery

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
