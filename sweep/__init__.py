"""Sweeps: spec expansion, execution on Ray, and the ``flushsweep`` command line.

Example:
    >>> from sweep import parse_spec, expand
    >>> spec = parse_spec("name: demo\\nbase: {workload: cpu-bound, vcpus: 4, pcpus: 2, threads: 2, duration_s: 0.01}\\n"
    ...                   "axes: {flush_mode: [native, hyperv-pv]}\\ncompare: flush_mode\\n")
    >>> [r.config.flush_mode for r in expand(spec).runs]
    ['native', 'hyperv-pv']

Ray and the store load lazily: a Ray worker imports only ``sweep._task`` and ``workers``.
"""

from sweep._controller import Failure, RunOptions, SweepController, SweepReport
from sweep._executor import Completion, Executor, InProcessExecutor
from sweep._expand import Expansion, PlannedRun, expand
from sweep._progress import Progress, ProgressState
from sweep._service import execute_sweep, pending_tasks, start_sweep
from sweep._spec import Axis, Compare, SweepSpec, TopologyRule, load_spec, parse_spec
from sweep._task import RunOutcome, RunTask, execute_batch
from sweep._yaml import SpecError


def __getattr__(name: str):  # RayExecutor imports ray: only when asked for
    if name == "RayExecutor":
        from sweep._ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")


__all__ = [
    "Axis",
    "Compare",
    "Completion",
    "Executor",
    "Expansion",
    "Failure",
    "InProcessExecutor",
    "PlannedRun",
    "Progress",
    "ProgressState",
    "RayExecutor",
    "RunOptions",
    "RunOutcome",
    "RunTask",
    "SpecError",
    "SweepController",
    "SweepReport",
    "SweepSpec",
    "TopologyRule",
    "execute_batch",
    "execute_sweep",
    "expand",
    "load_spec",
    "parse_spec",
    "pending_tasks",
    "start_sweep",
]
