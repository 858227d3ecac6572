"""A progress bar for long farmctl work: jobs done, running and left, redrawn in place on a terminal and
written as one line per event otherwise (logs, CI)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

WIDTH = 24


class ProgressBar:
    """`advance(n, line)` when jobs finish, `update(done, running, message)` while they run. Lines go to
    `sink` (a callable) when given, else to stderr."""

    def __init__(self, sink: Callable[[str], None] | None = None, total: int = 0, stream=None) -> None:
        self.sink = sink
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.running = 0
        self._tty = sink is None and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._started = time.monotonic()

    def _bar(self, message: str) -> str:
        total = max(self.total, self.done, 1)
        filled = int(WIDTH * self.done / total)
        left = max(total - self.done - self.running, 0)
        elapsed = time.monotonic() - self._started
        return (f"[{'#' * filled}{'-' * (WIDTH - filled)}] {self.done}/{total} done, {self.running} running, "
                f"{left} left ({elapsed:.0f} s){': ' + message if message else ''}")

    def _emit(self, line: str, permanent: bool) -> None:
        if self.sink is not None:
            if permanent:
                self.sink(line)
            return
        if self._tty:
            self.stream.write("\r\033[K" + line[:160] + ("\n" if permanent else ""))
        elif permanent:
            self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, done: int, running: int, message: str = "") -> None:
        """Redraw (on a terminal; at most 5 times a second) with the current counts."""
        with self._lock:
            self.done, self.running = done, running
            now = time.monotonic()
            if self._tty and now - self._last_draw >= 0.2:
                self._last_draw = now
                self._emit(self._bar(message), permanent=False)

    def advance(self, n: int, line: str, running: int | None = None) -> None:
        """n more jobs finished: print their line with the bar's counts (running: how many still run)."""
        with self._lock:
            self.done += n
            self.running = running if running is not None else max(self.running - n, 0)
            self._emit(self._bar(line), permanent=True)

    def note(self, line: str) -> None:
        """A line that does not change the counts (e.g. which candidate is being built)."""
        with self._lock:
            self._emit(self._bar(line), permanent=True)

    def close(self) -> None:
        """End the in-place line."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
