"""Sweeps: spec expansion, execution on Ray, and the ``flushsweep`` command line.

Example:
    >>> from sweep import parse_spec, expand
    >>> spec = parse_spec("name: demo\\nbase: {workload: cpu-bound, vcpus: 4, pcpus: 2, threads: 2, duration_s: 0.01}\\n"
    ...                   "axes: {flush_mode: [native, hyperv-pv]}\\ncompare: flush_mode\\n")
    >>> [r.config.flush_mode for r in expand(spec).runs]
    ['native', 'hyperv-pv']

Every public name loads on first use (PEP 562), so importing a submodule costs
only that submodule: a Ray worker imports ``sweep._task`` and ``workers`` and
nothing else (not the CLI, Optuna, SQLAlchemy, DuckDB, pandas or Ray's driver side).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Failure": "sweep._controller",
    "RunOptions": "sweep._controller",
    "SweepController": "sweep._controller",
    "SweepReport": "sweep._controller",
    "Completion": "sweep._executor",
    "Executor": "sweep._executor",
    "InProcessExecutor": "sweep._executor",
    "Expansion": "sweep._expand",
    "PlannedRun": "sweep._expand",
    "expand": "sweep._expand",
    "Progress": "sweep._progress",
    "ProgressState": "sweep._progress",
    "RayExecutor": "sweep._ray",
    "execute_sweep": "sweep._service",
    "pending_tasks": "sweep._service",
    "start_sweep": "sweep._service",
    "Axis": "sweep._spec",
    "Compare": "sweep._spec",
    "SweepSpec": "sweep._spec",
    "TopologyRule": "sweep._spec",
    "load_spec": "sweep._spec",
    "parse_spec": "sweep._spec",
    "RunOutcome": "sweep._task",
    "RunTask": "sweep._task",
    "execute_batch": "sweep._task",
    "SpecError": "sweep._yaml",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from sweep._controller import Failure, RunOptions, SweepController, SweepReport
    from sweep._executor import Completion, Executor, InProcessExecutor
    from sweep._expand import Expansion, PlannedRun, expand
    from sweep._progress import Progress, ProgressState
    from sweep._ray import RayExecutor
    from sweep._service import execute_sweep, pending_tasks, start_sweep
    from sweep._spec import Axis, Compare, SweepSpec, TopologyRule, load_spec, parse_spec
    from sweep._task import RunOutcome, RunTask, execute_batch
    from sweep._yaml import SpecError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = sorted(_EXPORTS)
