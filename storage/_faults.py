"""Crash points for fault-injection tests: pause a writer where a crash hurts most.

With ``FLUSHSWEEP_FAULT_PAUSE=<point>`` in its environment, a process reaching that
point writes a JSON note (what it was doing) to the file named by
``FLUSHSWEEP_FAULT_READY`` and sleeps until killed, so a test can SIGKILL a real
writer at exactly that moment. Without the variable a point costs one dict lookup.

Points: ``commit-after-rename`` (a result file is in place, its SQL commit is not),
``compact-after-rename`` (a merged file is in place, the manifest still lists the old ones),
``layout-after-move`` (migration 0004 moved one partition into ``results/``, not the others),
``layout-before-commit`` (it moved them all and rewrote the paths, uncommitted).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

PAUSE_ENV = "FLUSHSWEEP_FAULT_PAUSE"
READY_ENV = "FLUSHSWEEP_FAULT_READY"


def fault_point(name: str, **note: Any) -> None:
    if os.environ.get(PAUSE_ENV) != name:
        return
    ready = os.environ.get(READY_ENV)
    if ready:
        tmp = ready + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"point": name, "pid": os.getpid(), **note}, fh)
        os.replace(tmp, ready)
    while True:  # until the test kills us
        time.sleep(3600)


__all__ = ["PAUSE_ENV", "READY_ENV", "fault_point"]
