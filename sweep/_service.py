"""Sweeps as a service: register a spec's runs, then execute whatever is not yet done.

The store is the source of truth. ``start_sweep`` registers runs (idempotent:
known runs are linked, not duplicated); ``execute_sweep`` runs the sweep's runs
that are not done, whichever session registered them. So re-running a spec costs
nothing, an extended spec runs only what is new, and ``resume`` after Ctrl-C or
a SIGKILLed driver is the same call.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

from sweep._controller import Controller, RunOptions, SweepController, SweepReport
from sweep._executor import Executor
from sweep._expand import Expansion
from sweep._progress import Progress
from sweep._spec import SweepSpec
from sweep._task import RunTask

log = logging.getLogger("flushsweep.sweep")

#: Runs registered per add_runs call (bounds one transaction).
REGISTER_CHUNK = 5000


def start_sweep(store: Any, spec: SweepSpec, expansion: Expansion, *, kind: str = "sweep") -> None:
    """Create (or reopen) the sweep named by ``spec`` and register its runs.

    A sweep that already exists under this name is extended: its runs so far
    stay, the new spec's runs are added (runs are identified by run_id, so the
    same run is never registered twice).
    """
    from storage import NewRun

    store.begin_sweep(spec.name, spec.text, kind=kind)
    runs = [NewRun(r.run_id, r.config.to_dict(), r.baseline_run_id) for r in expansion.runs]
    for i in range(0, len(runs), REGISTER_CHUNK):
        store.add_runs(spec.name, runs[i : i + REGISTER_CHUNK])


def pending_tasks(store: Any, sweep: str, *, order: Sequence[str] = ()) -> tuple[list[RunTask], int]:
    """The sweep's runs that are not done (planned order first), and how many are already done.

    Runs left ``running`` by a driver that died, and runs that failed before,
    are handed back first, so resuming finishes them.
    """
    store.requeue(sweep, include_failed=True)
    records = store.runs(sweep)
    todo = [r for r in records if r.status != "done"]
    rank = {rid: i for i, rid in enumerate(order)}
    todo.sort(key=lambda r: rank.get(r.run_id, len(rank)))
    tasks = [RunTask(r.run_id, dict(r.config), r.baseline_run_id) for r in todo]
    return tasks, len(records) - len(todo)


def execute_sweep(
    store: Any,
    sweep: str,
    executor: Executor | Callable[[], Executor],
    *,
    order: Sequence[str] = (),
    options: RunOptions = RunOptions(),
    progress: Progress | None = None,
    on_start: Callable[[Executor], None] | None = None,
) -> SweepReport:
    """Run every run of ``sweep`` that is not done; returns how the session ended.

    Args:
        executor: an Executor, or a factory called only when there is work
            (so a sweep with nothing left does not start Ray); a factory's
            executor is closed afterwards.
        order: run_ids in the order to submit them (e.g. the spec's expansion).
        on_start: called with the executor once it exists (e.g. to print where runs go).

    Ctrl-C (SIGINT) and SIGTERM stop the session cleanly: in-flight runs are
    dropped, finished ones committed, the sweep marked ``interrupted``. A second
    Ctrl-C during that cleanup raises KeyboardInterrupt.

    A session that leaves nothing to compute compacts the sweep's result files
    (one per committed batch) into a few large ones, so queries read it fast
    (``compact_finished``).
    """
    store.set_sweep_status(sweep, "running")
    tasks, skipped = pending_tasks(store, sweep, order=order)
    owned = not isinstance(executor, Executor)
    if not tasks:
        controller = SweepController(store=store, sweep=sweep, executor=_NoWork(), tasks=[], skipped=skipped, options=options, progress=progress)
        return _compacted(store, controller.run())
    try:
        ex = executor() if owned else executor  # type: ignore[operator]
    except BaseException:  # Ctrl-C while Ray starts, or no cluster: nothing ran, but say so
        store.set_sweep_status(sweep, "interrupted")
        raise
    try:
        if on_start is not None:
            on_start(ex)
        controller = SweepController(store=store, sweep=sweep, executor=ex, tasks=tasks, skipped=skipped, options=options, progress=progress)
        with stop_on_signals(controller):
            report = controller.run()
    finally:
        if owned:
            ex.close()
    return _compacted(store, report)


def _compacted(store: Any, report: SweepReport) -> SweepReport:
    if report.remaining == 0:
        compact_finished(store, report.sweep)
    return report


def compact_finished(store: Any, sweep: str) -> None:
    """Merge the small result files of a finished sweep, search or calibration (one per commit).

    A million rows in a thousand files query about three times slower than in two.
    Compaction is atomic and changes no result; if it fails (e.g. a damaged file) the
    sweep is still finished, so this only warns.
    """
    from storage import StoreError

    try:
        store.compact(sweep=sweep)
    except StoreError as exc:
        log.warning("sweep %s finished, but compacting its result files failed: %s", sweep, exc)


@contextlib.contextmanager
def stop_on_signals(controller: Controller) -> Iterator[None]:
    """SIGINT/SIGTERM ask the controller to stop instead of raising mid-commit (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stopping = True
        controller.request_stop("interrupted")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _NoWork(Executor):
    """The executor of a session with nothing to run."""

    @property
    def workers(self) -> int:
        return 1

    def submit(self, tasks: Sequence[RunTask]) -> int:  # pragma: no cover - never called with no tasks
        raise RuntimeError("nothing to run")

    def wait(self, timeout: float) -> list:
        return []


__all__ = ["compact_finished", "execute_sweep", "pending_tasks", "start_sweep", "stop_on_signals"]
