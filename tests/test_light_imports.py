"""The worker import path is light: a Ray worker importing ``sweep._task`` loads no driver-side machinery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: What only the driver needs: the CLI, the store, search, and the heavy libraries behind them.
DRIVER_SIDE = ("sweep.cli", "sweep._controller", "sweep._spec", "storage._store", "storage._query", "optuna", "sqlalchemy",
               "duckdb", "pandas", "matplotlib", "ray")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_importing_the_worker_task_module_loads_nothing_of_the_driver() -> None:
    loaded = _loaded_after("import sweep._task")
    assert "sweep._task" in loaded
    assert sorted(m for m in DRIVER_SIDE if m in loaded) == []


def test_every_public_name_of_sweep_still_resolves_on_first_use() -> None:
    loaded = _loaded_after("import sweep\nnames = [getattr(sweep, n) for n in sweep.__all__]\nassert all(names)")
    assert "sweep._service" in loaded and "sweep._ray" in loaded
