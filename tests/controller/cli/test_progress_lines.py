"""The job progress lines farmctl prints on stderr say what happens: loading a model is not "0 runs, 0.0 s"."""

from __future__ import annotations

import io

from controller.cli.flags import progress_printer
from protos import agent_pb2 as pb


def _line(progress: pb.Progress) -> str:
    out = io.StringIO()
    progress_printer(out)("local", pb.RunEvent(progress=progress))
    return out.getvalue()


def test_loading_says_loading_and_measuring_counts_runs():
    assert "loading the model (building session)" in _line(pb.Progress(phase="load", message="building session"))
    assert "0 runs" not in _line(pb.Progress(phase="load", message="building session"))
    assert "measure: 120 runs, 1.5 s" in _line(pb.Progress(phase="measure", iterations=120, elapsed_s=1.5))
