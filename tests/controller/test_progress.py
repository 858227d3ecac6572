"""The progress bar's heartbeat: a long silent step still prints a line, and -q silences it."""

from __future__ import annotations

import io
import time

from controller.progress import ProgressBar


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_long_silent_step_keeps_talking():
    stream = io.StringIO()
    bar = ProgressBar(stream=stream, total=3, heartbeat_s=0.2)
    try:
        bar.note("building int8-kl (int8 + kl)")
        assert _wait_for(lambda: "still building int8-kl (int8 + kl) (" in stream.getvalue())
        bar.advance(1, "int8-kl on local: p50 3.1 ms")
        assert _wait_for(lambda: "working (" in stream.getvalue().split("int8-kl on local")[-1])
    finally:
        bar.close()


def test_a_sink_hears_the_heartbeat_and_nothing_after_close():
    lines = []
    bar = ProgressBar(sink=lines.append, heartbeat_s=0.05)
    assert bar._beat is None   # no thread until there is something to repeat
    bar.note("training epoch 1/8")
    assert _wait_for(lambda: any("still training epoch 1/8" in line for line in lines))
    bar.close()
    assert not bar._beat.is_alive()
    heard = len(lines)
    time.sleep(0.2)   # several heartbeat periods: nothing may arrive after close()
    assert len(lines) == heard


def test_an_unused_bar_starts_no_thread():
    bar = ProgressBar(stream=io.StringIO(), heartbeat_s=0.05)
    bar.close()
    assert bar._beat is None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_redrawn_line_fits_the_terminal_and_says_when_it_will_end(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    stream = _Terminal()
    bar = ProgressBar(stream=stream, total=4, heartbeat_s=60)
    try:
        bar.advance(1, "int8 on local: p50 3.1 ms")
        bar.advance(1, "fp16 on local: p50 2.9 ms")
        bar._last_draw = 0.0
        bar.update(2, 1, "building int8-percentile (int8 + percentile calibration on 64 samples) " * 2)
    finally:
        bar.close()
    redrawn = [row.rstrip("\n") for row in stream.getvalue().split("\r\033[K") if "building" in row]
    assert redrawn and all(len(row) < 80 for row in redrawn)
    assert redrawn[-1].endswith("...") and "2/4 done" in redrawn[-1] and "ETA " in redrawn[-1]
    assert "int8 on local: p50 3.1 ms" in stream.getvalue()      # a finished job's line is kept whole


def test_the_eta_goes_by_the_pace_after_the_first_job():
    lines = []
    bar = ProgressBar(sink=lines.append, total=4, heartbeat_s=60)
    bar.note("training the baseline")
    bar.advance(1, "baseline done")          # often far longer than a candidate: not a pace to go by
    bar.advance(1, "int8 done")
    bar.close()
    assert "ETA" not in lines[0] and "ETA" not in lines[1] and "ETA 0 s" in lines[2]


def test_the_eta_names_work_not_yet_counted():
    lines = []
    bar = ProgressBar(sink=lines.append, total=4, heartbeat_s=60)
    bar.then = "timing the contenders again"
    bar.advance(1, "baseline done")
    bar.advance(1, "int8 done")
    bar.then = ""
    bar.advance(1, "fp16 done")
    bar.close()
    assert "ETA 0 s + timing the contenders again" in lines[1]
    assert "+ timing" not in lines[2]
