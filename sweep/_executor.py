"""Executors: where batches of runs are computed. The controller decides what and when.

The controller only needs ``submit`` (a batch in, a ticket out) and ``wait``
(finished tickets, or none before the timeout), so the same controller logic is
tested in-process and used on a Ray cluster (``sweep._ray.RayExecutor``).
"""

from __future__ import annotations

import abc
import itertools
import socket
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sweep._task import BatchResult, RunOutcome, RunTask, execute_batch, pack_outcomes

if TYPE_CHECKING:
    import pyarrow as pa

#: A batch function: tasks and the node name in, outcomes out (``sweep._task.execute_batch``).
BatchFunction = Callable[[Sequence[RunTask], str], list[RunOutcome]]


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished ticket: its outcomes and the rows of the successful ones, or ``error`` when the whole task was lost.

    ``table`` holds one result row per successful outcome (``sweep._task.pack_outcomes``),
    ready for ``ResultStore.commit_results``; ``problem`` is the store's reason when the
    worker's rows did not make a table. A task is lost when its worker or node died more
    often than the executor retries (Ray ``max_retries``); the controller then counts one
    failed attempt for each run in it.
    """

    ticket: int
    outcomes: tuple[RunOutcome, ...] | None
    error: str | None = None
    table: "pa.Table | None" = None
    problem: str | None = None

    @classmethod
    def of(cls, ticket: int, batch: BatchResult) -> "Completion":
        """The completion of a ticket whose worker returned ``batch``."""
        return cls(ticket, batch.outcomes, table=batch.table, problem=batch.problem)

    def rows_by_run(self) -> dict[str, dict[str, Any]]:
        """The result row of every successful run as a dict (for drivers that read a few rows)."""
        if self.table is None:
            return {}
        return dict(zip(self.table.column("run_id").to_pylist(), self.table.to_pylist()))


class Executor(abc.ABC):
    """Computes batches of runs; never touches the store.

    Contract: every submitted ticket is returned by ``wait`` exactly once
    (with outcomes or an error) unless ``cancel`` is called first.
    """

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """How many batches can compute at once."""

    @abc.abstractmethod
    def submit(self, tasks: Sequence[RunTask]) -> int:
        """Start a batch; returns its ticket."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[Completion]:
        """Finished tickets; empty when none finished within ``timeout`` seconds."""

    def cancel(self) -> None:
        """Give up on every ticket in flight (best effort; their results are ignored)."""

    def close(self) -> None:
        """Release what the executor started."""

    def describe(self) -> str:
        return f"{type(self).__name__} ({self.workers} workers)"

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs each batch in the calling process when ``wait`` is called: deterministic, for tests and debugging.

    Args:
        batch: the batch function (default: ``execute_batch``, the real simulation).
        node: the node name recorded with each run (default: this host's name).
        workers: how many tickets the controller may keep in flight.
    """

    def __init__(self, *, batch: BatchFunction = execute_batch, node: str | None = None, workers: int = 1) -> None:
        self._batch = batch
        self._node = node or socket.gethostname()
        self._workers = workers
        self._queue: deque[tuple[int, list[RunTask]]] = deque()
        self._tickets = itertools.count(1)

    @property
    def workers(self) -> int:
        return self._workers

    def submit(self, tasks: Sequence[RunTask]) -> int:
        ticket = next(self._tickets)
        self._queue.append((ticket, list(tasks)))
        return ticket

    def wait(self, timeout: float) -> list[Completion]:
        if not self._queue:
            return []
        ticket, tasks = self._queue.popleft()
        return [Completion.of(ticket, pack_outcomes(self._batch(tasks, self._node)))]  # as a Ray worker returns it

    def cancel(self) -> None:
        self._queue.clear()


__all__ = ["BatchFunction", "Completion", "Executor", "InProcessExecutor"]
