"""Ends an embedded Ray's processes when the driver that started it ends, however it ends.

Ray ties its GCS and raylet to the driver (``PR_SET_PDEATHSIG``), but not the
processes the raylet starts: after a ``kill -9`` of the driver, the dashboard and
runtime-env agents notice within seconds, then spend a minute trying to report to
the dead GCS before they exit. So ``RayExecutor`` starts this script (stdlib only,
run by path: it imports nothing of flushsweep) in a session of its own, holding the
read end of a pipe whose write end only the driver has. When the pipe closes (a clean
``close()``, an exception, SIGKILL) it stops every process of the Ray session: those
whose command line names the session directory (GCS, raylet, monitors), and Ray's own
``ray::...`` processes (agents, workers) with a file open in it. The directory is
unique to this driver (``session_<time>_<driver pid>``).

Usage: ``python _ray_watchdog.py SESSION_DIR`` with the pipe on stdin.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: SIGTERM first; what is still there after this long gets SIGKILL.
GRACE_S = 2.0


def session_processes(session_dir: str) -> list[int]:
    """Live processes (not zombies) attached to ``session_dir``, other than this one."""
    marker = session_dir.rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
            attached = marker.encode() in cmdline or (cmdline.startswith(b"ray::") and _has_file_in(entry, marker))
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
        if attached:
            found.append(int(entry))
    return found


def _has_file_in(pid: str, marker: str) -> bool:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(marker):
                return True
        except OSError:
            continue
    return False


def stop_session(session_dir: str, grace_s: float = GRACE_S) -> int:
    """SIGTERM the session's processes, SIGKILL whatever outlives ``grace_s``; returns how many were signalled."""
    signalled: set[int] = set()
    deadline = time.monotonic() + grace_s
    while True:
        alive = session_processes(session_dir)
        if not alive:
            return len(signalled)
        sig = signal.SIGKILL if time.monotonic() >= deadline else signal.SIGTERM
        for pid in alive:
            if sig == signal.SIGKILL or pid not in signalled:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
                signalled.add(pid)
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle
    while os.read(0, 4096):  # returns b"" once the driver's end is closed
        pass
    stop_session(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
