"""Progress display: a live bar on a terminal, plain periodic lines in logs and CI."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO


@dataclass(frozen=True, slots=True)
class ProgressState:
    """Counts for one sweep; ``total`` includes the runs skipped because they were already done."""

    total: int
    skipped: int
    done: int
    failed: int
    retried: int
    in_flight: int

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - self.failed


class Progress:
    """Renders ProgressState: a redrawn bar when ``stream`` is a terminal, else a line every ``interval_s``.

    Args:
        stream: where to write (default stderr, so stdout stays clean for tables).
        tty: force the bar on/off (default: ``stream.isatty()``).
        interval_s: seconds between plain lines (the bar redraws at most 10 times a second).
    """

    def __init__(self, label: str, *, stream: TextIO | None = None, tty: bool | None = None, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = interval_s if not self.tty else 0.1
        self._clock = clock
        self._start = clock()
        self._last = -1e9
        self._drawn = False

    def restart(self) -> None:
        """Count elapsed time (and the rate) from now: the controller calls this once workers exist."""
        self._start = self._clock()
        self._last = -1e9

    def update(self, state: ProgressState, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        line = self.render(state, now - self._start)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def render(self, state: ProgressState, elapsed: float) -> str:
        finished = state.done + state.failed
        rate = state.done / elapsed if elapsed > 0 else 0.0
        eta = format_duration(state.remaining / rate) if rate > 0 and state.remaining else ("0s" if not state.remaining else "?")
        counts = f"{state.skipped + finished}/{state.total} runs: {state.done} done, {state.failed} failed, {state.skipped} skipped"
        extra = f", {state.retried} retried" if state.retried else ""
        tail = f"{counts}{extra} | {rate:.1f} runs/s | ETA {eta}"
        if not self.tty:
            return f"{self.label}: {tail} | {format_duration(elapsed)} elapsed"
        width = 24
        frac = (state.skipped + finished) / state.total if state.total else 1.0
        filled = int(round(frac * width))
        return f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {tail}"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else (f"{m}:{s:02d}" if m else f"{s}s")


__all__ = ["Progress", "ProgressState", "format_duration"]
