"""Guest locks: one FIFO reader-writer lock with the waiting policy of each real one.

* Linux ``mmap_sem`` (4.19 rwsem): FIFO waiters; a woken batch is the readers at
  the head of the queue, or one writer (``__rwsem_mark_wake``); readers queue
  behind a waiting writer. A writer spins while it waits (optimistic spinning
  on the owner), then sleeps; readers sleep: one spin budget for both.
* NT working-set lock (a pushlock in NT 6+): the same FIFO discipline, spin then wait.
* Cygwin ``mmap_guard`` (a muto, ``sync.cc``): exclusive only, and a waiter never
  spins: ``WaitForSingleObject(bruteforce)`` on an auto-reset event that
  ``release`` sets for one waiter, so the lock is handed over FIFO.

Ownership passes at release to the threads granted (a handoff): they run on
when they next get a vCPU. Page faults hold a lock *revocably* (``TOUCH``): each
fault takes it for one page only, so a writer that queues takes it at the next
page boundary of every faulting holder.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.guest.thread import GuestThread


class Lock:
    __slots__ = ("name", "readers", "writer", "waiters", "spin_ns", "revocable")

    def __init__(self, name: str, *, spin_ns: int) -> None:
        self.name = name
        self.readers = 0
        self.writer: GuestThread | None = None
        self.waiters: deque[tuple[GuestThread, bool]] = deque()
        self.spin_ns = spin_ns  # 0: waiters sleep at once (Cygwin muto)
        self.revocable: list[GuestThread] = []  # shared holders faulting page by page

    def try_acquire(self, t: "GuestThread", shared: bool) -> bool:
        """Take it now, or queue ``t`` (FIFO) and return False."""
        if self.writer is None and not self.waiters and (shared or self.readers == 0):
            if shared:
                self.readers += 1
            else:
                self.writer = t
            return True
        self.waiters.append((t, shared))
        return False

    def release(self, t: "GuestThread") -> list["GuestThread"]:
        """Release and return the threads that now hold it (the handoff)."""
        if self.writer is t:
            self.writer = None
        else:
            self.readers -= 1
        return self._grant()

    def _grant(self) -> list["GuestThread"]:
        granted: list[GuestThread] = []
        w = self.waiters
        while w and self.writer is None:
            nxt, shared = w[0]
            if shared:
                w.popleft()
                self.readers += 1
                granted.append(nxt)
            elif self.readers == 0:
                w.popleft()
                self.writer = nxt
                granted.append(nxt)
                break
            else:
                break
        return granted


__all__ = ["Lock"]
