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


def test_quiet_sink_hears_nothing_and_close_stops_the_heartbeat():
    lines = []
    bar = ProgressBar(sink=lambda line: None, heartbeat_s=0.05)
    bar.note("training")
    bar.close()
    assert not bar._beat.join(timeout=5) and not bar._beat.is_alive()
    bar2 = ProgressBar(sink=lines.append, heartbeat_s=0.05)
    bar2.note("training epoch 1/8")
    assert _wait_for(lambda: any("still training epoch 1/8" in line for line in lines))
    bar2.close()
