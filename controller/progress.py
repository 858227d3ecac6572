"""A progress bar for long farmctl work: jobs done, running and left, redrawn in place on a terminal and
written as one line per event otherwise (logs, CI)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

WIDTH = 24          # the bar's cells on a wide terminal; fewer on a narrow one
HEARTBEAT_S = 8.0    # with nothing to report for this long, say what is still running: a line every <= 9 s


class ProgressBar:
    """`advance(n, line)` when jobs finish, `update(done, running, message)` while they run. Lines go to
    `sink` (a callable, called from a background thread too: keep it thread-safe) when given, else to
    stderr. A heartbeat keeps long silent steps (training an
    epoch, a KL calibration) talking: on a terminal the bar's clock is redrawn every second; otherwise,
    after `heartbeat_s` without a line, one line says what is still running and for how long."""

    def __init__(self, sink: Callable[[str], None] | None = None, total: int = 0, stream=None,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.sink = sink
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.running = 0
        self._tty = sink is None and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._started = time.monotonic()
        self._last_line = self._started
        self._message = ""
        self._since = self._started
        self._first_done: tuple[float, int] | None = None   # when the first jobs ended, and how many
        self.then = ""   # work that follows the counted jobs and is not yet counted (shown after the ETA)
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None   # started by the first line, stopped by close()

    def _start_heartbeat(self) -> None:
        """Called with the lock held."""
        if self._beat is None and not self._stop.is_set():
            self._beat = threading.Thread(target=self._heartbeat, name="progress-heartbeat", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self._heartbeat_s / 4)):
            with self._lock:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                if self._tty:
                    self._emit(self._bar(self._message), permanent=False)
                elif now - self._last_line >= self._heartbeat_s:
                    self._emit(self._bar(f"still {self._message} ({now - self._since:.0f} s so far)" if self._message
                                         else f"working ({now - self._last_line:.0f} s since the last line)"),
                               permanent=True)

    def _bar(self, message: str) -> str:
        total = max(self.total, self.done, 1)
        cells = WIDTH if not self._tty else max(8, min(WIDTH, terminal_columns(self.stream) // 8))
        filled = int(cells * self.done / total)
        left = max(total - self.done - self.running, 0)
        elapsed = time.monotonic() - self._started
        eta = ""
        if self.total and self._first_done and self._first_done[1] < self.done < self.total:
            # the pace since the first jobs ended, extrapolated (the first is often the baseline's training,
            # far longer than a candidate): a rough guide, shown once there is a pace to go by
            when, count = self._first_done
            pace = (time.monotonic() - when) / (self.done - count)
            eta = f", ETA {duration(pace * (self.total - self.done))}" + (f" + {self.then}" if self.then else "")
        return (f"[{'#' * filled}{'-' * (cells - filled)}] {self.done}/{total} done, {self.running} running, "
                f"{left} left ({duration(elapsed)}{eta}){': ' + message if message else ''}")

    def _emit(self, line: str, permanent: bool) -> None:
        if permanent:
            self._last_line = time.monotonic()
        if self.sink is not None:
            if permanent:
                self.sink(line)
            return
        if self._tty:   # a line redrawn in place must fit the terminal, or its wrapped rows stay behind
            self.stream.write("\r\033[K" + (line + "\n" if permanent else fit(line, terminal_columns(self.stream))))
        elif permanent:
            self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, done: int, running: int, message: str = "") -> None:
        """Redraw (on a terminal; at most 5 times a second) with the current counts."""
        with self._lock:
            self.done, self.running = done, running
            self._remember(message)
            now = time.monotonic()
            if self._tty and now - self._last_draw >= 0.2:
                self._last_draw = now
                self._emit(self._bar(message), permanent=False)

    def advance(self, n: int, line: str, running: int | None = None) -> None:
        """n more jobs finished: print their line with the bar's counts (running: how many still run)."""
        with self._lock:
            self._message = ""   # a result line: what runs next is unknown until its note
            self._start_heartbeat()
            self.done += n
            self._first_done = self._first_done or (time.monotonic(), self.done)
            self.running = running if running is not None else max(self.running - n, 0)
            self._emit(self._bar(line), permanent=True)

    def note(self, line: str) -> None:
        """A line that does not change the counts (e.g. which candidate is being built)."""
        with self._lock:
            self._remember(line)
            self._emit(self._bar(line), permanent=True)

    def _remember(self, message: str) -> None:
        """What the heartbeat repeats: the latest message, and since when (lock held)."""
        self._start_heartbeat()
        if message and message != self._message:
            self._message, self._since = message, time.monotonic()

    def close(self) -> None:
        """End the in-place line and the heartbeat (nothing is written after this)."""
        with self._lock:
            self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def terminal_columns(stream) -> int:
    """The terminal's width now (it can be resized): $COLUMNS, else the stream's tty; 80 if unknown."""
    try:
        if os.environ.get("COLUMNS"):
            return max(20, int(os.environ["COLUMNS"]))
        return max(20, os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, OSError, ValueError):
        return 80


def fit(line: str, columns: int) -> str:
    """The line cut to one row short of the width (the cursor's cell), marked with ... when cut."""
    return line if len(line) < columns else line[:columns - 4] + "..."


def duration(seconds: float) -> str:
    """12 s, 3m05s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
