"""Stop a real store process at a named crash point (storage/_faults.py), for the test to SIGKILL it there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: The process: ``MODE STORE DB PAYLOAD``; open the store (which migrates it), then commit or compact.
WRITER = r"""
import json, sys
from storage import open_store
mode, store_dir, db, payload = sys.argv[1:5]
with open_store(store_dir, db) as store:
    if mode == "commit":
        store.commit_results("sw", json.load(open(payload)))
    elif mode == "compact":
        store.compact(target_rows=int(payload))
print("finished without pausing", flush=True)
"""


def pause_at(point: str, tmp_path: Path, mode: str, store_dir: Path | str, db: str, payload: str = "") -> dict:
    """Start a writer that pauses at ``point`` and wait until it is there.

    Returns:
        The note the writer left (``path`` of the file it wrote, ...) plus ``proc``.
    """
    ready = tmp_path / f"ready-{point}.json"
    env = {**os.environ, "FLUSHSWEEP_FAULT_PAUSE": point, "FLUSHSWEEP_FAULT_READY": str(ready)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, mode, str(store_dir), db, payload], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"writer never reached {point} (exit {proc.returncode}): {out} {err}")
        time.sleep(0.05)
    return {"proc": proc, **json.loads(ready.read_text())}


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
