"""The event loop: a heap of (time, seq, callback, arg), time in integer nanoseconds.

Why so small: the engine simulates hundreds of thousands of events per run and
must finish the 2018 scenario in well under a second, so events are plain heap
tuples, not objects. The sequence number breaks ties FIFO (as in SimPy) and keeps
callbacks from ever being compared. Cancellation is the caller's business: an
entity bumps a token and stale callbacks check it (cheaper than heap removal).
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any, Callable


class EmptySchedule(Exception):
    """No events are left but the simulation was asked to go on."""


class Simulation:
    __slots__ = ("now", "events", "_queue", "_seq", "_stopped")

    def __init__(self) -> None:
        self.now = 0
        self.events = 0
        self._queue: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self._stopped = False

    def at(self, time: int, callback: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``callback(arg)`` at absolute ``time`` (never in the past)."""
        self._seq += 1
        heappush(self._queue, (time if time > self.now else self.now, self._seq, callback, arg))

    def after(self, delay: int, callback: Callable[[Any], None], arg: Any = None) -> None:
        self._seq += 1
        heappush(self._queue, (self.now + (delay if delay > 0 else 0), self._seq, callback, arg))

    def stop(self) -> None:
        self._stopped = True

    def run(self, until: int | None = None) -> None:
        """Process events in time order until ``stop()``, the queue empties, or ``until``."""
        queue = self._queue
        events = self.events
        limit = until if until is not None else 1 << 62
        while queue and not self._stopped:
            if queue[0][0] > limit:
                self.now = limit
                break
            t, _, callback, arg = heappop(queue)
            self.now = t
            events += 1
            callback(arg)
        self.events = events
