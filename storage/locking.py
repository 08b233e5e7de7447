"""The one inter-process lock helper: ``fcntl.flock`` on a lock file.

Shared by the store (a result file and its SQL commit, repair, compaction) and the
report shelf (one publisher per period). ``flock`` is dropped by the kernel when its
holder dies, even by SIGKILL, so a crashed writer never leaves a stale lock; it is
exclusive across processes on one host and on file systems that map it to POSIX
locks (NFSv4).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Raises:
        OSError: the lock file cannot be created or opened (e.g. a read-only directory).
    """
    fd = os.open(Path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


__all__ = ["exclusive_lock"]
