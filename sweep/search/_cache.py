"""The driver's view of finished runs: run_id -> metrics, read from the store once, then kept current.

A trial needs the metrics of its runs. Reading them from Parquet for every
trial would cost a DuckDB query per trial, so the driver loads, once at start,
every stored result that could belong to this search (the rows whose fixed
fields, those the space does not vary, equal the spec's), then adds the rows
its own runs return. A run stored by someone else after that load is simulated
again and dropped at commit (the store keeps one row per run), so the result is
the same, only slower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from sweep.search._space import varying_fields
from sweep.search._spec import SearchSpec
from workers.config import RunConfig, field_names
from workers.result import metric_names

if TYPE_CHECKING:
    import pyarrow as pa

#: What is kept of a result row: the metrics (engine_wall_s too: the bench reports simulation time).
KEPT = tuple(metric_names())


class RunCache:
    """Metrics of finished runs by run_id."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows[str(row["run_id"])] = {k: row[k] for k in KEPT if k in row}

    def prefetch(self, store: Any, spec: SearchSpec, example: RunConfig | None) -> int:
        """Load the stored results this search could use; returns how many rows were loaded.

        Args:
            example: any PV config of the search (its fixed fields select the rows);
                None when no trial can be planned, then nothing is loaded.
        """
        if example is None:
            return 0
        columns = _columns(store)
        if "run_id" not in columns:  # nothing stored yet
            return 0
        varying = varying_fields(spec.space, spec.base, list(spec.compare.baseline_overrides))
        fixed = {f: getattr(example, f) for f in field_names() if f not in varying and f in columns}
        before = len(self.rows)
        self.add_table(store.results(fixed))
        return len(self.rows) - before

    def add_table(self, table: "pa.Table") -> None:
        """Every row of a result table (as the store returns it, or as a worker packed it)."""
        keep = [c for c in ("run_id", *KEPT) if c in table.column_names]
        for row in table.select(keep).to_pylist():
            self.add(row)


def _columns(store: Any) -> set[str]:
    if hasattr(store, "columns"):
        return set(store.columns())
    table = store.sql("SELECT * FROM results LIMIT 0")  # any ResultStore
    return set(table.column_names)


__all__ = ["KEPT", "RunCache"]
