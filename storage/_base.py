"""The ResultStore contract: what sweep/ and search may rely on.

Storage knows nothing of the engine: a result row is a flat dict of scalars
(``run_id``, every RunConfig field, every metric, plus bookkeeping columns).
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

if TYPE_CHECKING:  # pyarrow loads lazily: opening a store must stay cheap
    import pandas
    import pyarrow

RunStatus = Literal["pending", "running", "done", "failed"]
SweepStatus = Literal["running", "interrupted", "done", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class SweepRecord:
    name: str
    kind: str  # "sweep", "search", "calibration", "report"
    spec_hash: str
    spec_text: str
    status: SweepStatus
    created: dt.datetime
    code_version: str
    host: str
    package_versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    status: RunStatus
    attempts: int
    config: Mapping[str, Any]
    baseline_run_id: str | None = None
    error: str | None = None
    node: str | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    result_file: str | None = None


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run a sweep asks for; ``run_id`` is the content hash the caller computed."""

    run_id: str
    config: Mapping[str, Any]
    baseline_run_id: str | None = None


class ResultStore(abc.ABC):
    """Parquet results plus SQL metadata, with exactly-once runs.

    Contract:
    - Identity: a run is its ``run_id``. ``add_runs`` is idempotent; a run that is
      already known (from any sweep) is linked to the new sweep, not duplicated,
      and a run already ``done`` is never computed again.
    - Visibility: a result is visible (``results()``, ``runs(status="done")``)
      only once both its Parquet file and the SQL commit succeeded.
      ``commit_results`` writes the file under a temporary name, renames it into
      place, then commits the runs' status and the file manifest in one SQL
      transaction. A crash between the two leaves an orphan file that the next
      open removes; a run marked done whose file is missing goes back to pending.
    - Exactly once: a row for a run_id that is already done is dropped at commit,
      so two drivers racing on the same run store it once.
    - Single writer per database connection; read-your-writes within a store.
    - Raises ``StoreError`` (one line, says what to do) for a bad URL, an
      unreachable database, an unwritable directory, a newer schema, etc.
    """

    # --- sweeps -------------------------------------------------------------
    @abc.abstractmethod
    def begin_sweep(self, name: str, spec_text: str, *, kind: str = "sweep") -> SweepRecord:
        """Create the sweep, or return it if it exists (status set back to running)."""

    @abc.abstractmethod
    def set_sweep_status(self, name: str, status: SweepStatus) -> None: ...

    @abc.abstractmethod
    def find_sweep(self, name: str) -> SweepRecord | None: ...

    @abc.abstractmethod
    def sweeps(self) -> list[SweepRecord]: ...

    # --- runs ---------------------------------------------------------------
    @abc.abstractmethod
    def add_runs(self, sweep: str, runs: Sequence[NewRun]) -> int:
        """Register runs for a sweep; returns how many were not yet known at all."""

    @abc.abstractmethod
    def runs(self, sweep: str | None = None, status: RunStatus | None = None) -> list[RunRecord]: ...

    @abc.abstractmethod
    def progress(self, sweep: str) -> dict[str, int]:
        """Counts by status for a sweep's runs: {'pending': n, 'running': n, 'done': n, 'failed': n}."""

    @abc.abstractmethod
    def mark_running(self, run_ids: Sequence[str]) -> None:
        """pending -> running, attempts += 1."""

    @abc.abstractmethod
    def commit_results(self, sweep: str, rows: "Sequence[Mapping[str, Any]] | pyarrow.Table") -> int:
        """Store result rows (each has ``run_id`` and optionally ``node``), as dicts or an Arrow
        table; returns rows stored."""

    @abc.abstractmethod
    def record_failure(self, run_id: str, error: str, *, node: str | None = None, final: bool) -> None:
        """Record a failed attempt: back to pending, or failed for good when ``final``."""

    @abc.abstractmethod
    def requeue(self, sweep: str, *, include_failed: bool = False) -> int:
        """running (left by a dead driver) -> pending; failed too if asked. Returns runs requeued."""

    # --- reading ------------------------------------------------------------
    @abc.abstractmethod
    def results(self, filter: Mapping[str, Any] | None = None, *, sweep: str | None = None) -> "pyarrow.Table":
        """Result rows; ``filter`` is column -> value (or list of values)."""

    def to_pandas(self, filter: Mapping[str, Any] | None = None, *, sweep: str | None = None) -> "pandas.DataFrame":
        return self.results(filter, sweep=sweep).to_pandas()

    @abc.abstractmethod
    def sql(self, query: str) -> "pyarrow.Table":
        """Read-only SQL (DuckDB) over views ``results``, ``runs``, ``sweeps``, ``sweep_runs``."""

    # --- maintenance --------------------------------------------------------
    @abc.abstractmethod
    def check(self, *, repair: bool = False) -> list[str]:
        """Verify files against the manifest; returns problems (empty when healthy).

        With ``repair``, damaged or missing files are set aside (never deleted) and
        their runs go back to pending; the returned lines say what was done.
        """

    @abc.abstractmethod
    def compact(self, *, target_rows: int = 500_000, sweep: str | None = None) -> int:
        """Merge small files atomically (only ``sweep``'s, if given); returns files removed."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreError(RuntimeError):
    """A store problem the user can act on; the message is one line that says how."""
