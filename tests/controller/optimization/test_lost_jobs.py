"""One failed job costs one loop or one row, never the run: a runner SIGKILLed from outside during the
confirmation loops leaves a decision, a chosen artifact when a candidate qualifies, the report, and the
lost loop named; the same command again resumes from the store."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import psutil
import pytest

from controller.measure.settings import MeasureSettings
from controller.optimization.api import optimize
from tests import models

pytestmark = pytest.mark.slow   # an optimize run against its own agent

TECHNIQUES = "int8-dynamic,int8-minmax,fp16"
FAST = MeasureSettings(threads=1, warmup=2, min_iterations=20, min_seconds=0.3, input_shapes={"x": [8, 512]})


def _kill_runner(agent_pid: int, armed: threading.Event, nth: int, killed: list[int],
                 stop: threading.Event) -> None:
    """Once armed, SIGKILL the nth `agent.runner` child of the agent that appears (ours: found by its PID)."""
    armed.wait()
    seen: list[int] = []
    while not stop.is_set() and not killed:
        for child in psutil.Process(agent_pid).children():
            try:
                if child.pid not in seen and "agent.runner" in " ".join(child.cmdline()):
                    seen.append(child.pid)
                    if len(seen) == nth:
                        child.send_signal(signal.SIGKILL)
                        killed.append(child.pid)
                        return
            except psutil.NoSuchProcess:
                continue
        stop.wait(0.01)


def _run(tmp_path, client, agent, arm_on: str, nth: int):
    """An optimize run whose nth runner after the first progress line containing `arm_on` is killed."""
    model = models.gemm_stack(tmp_path / "mlp.onnx")
    armed, stop, killed, lines = threading.Event(), threading.Event(), [], []

    def progress(line: str) -> None:
        lines.append(line)
        if arm_on in line:
            armed.set()

    if not arm_on:
        armed.set()
    killer = threading.Thread(target=_kill_runner, args=(agent.proc.pid, armed, nth, killed, stop), daemon=True)
    killer.start()
    try:
        result = optimize(str(model), [client.address], techniques=TECHNIQUES, settings=FAST,
                          out_dir=tmp_path / "out", store=tmp_path / "results.db", confirm_rounds=2,
                          progress=progress)
    finally:
        stop.set()
        armed.set()
        killer.join(10)
    assert killed, "no runner was killed: " + " | ".join(lines[-5:])
    assert result.report and result.report.exists()
    dev = result.devices[0]
    assert dev.chosen or dev.failure.startswith("no candidate meets"), dev.failure
    if dev.chosen:
        assert Path(dev.artifact).exists()
    return result, model


def _rerun(tmp_path, client, model):
    return optimize(str(model), [client.address], techniques=TECHNIQUES, settings=FAST, out_dir=tmp_path / "out",
                    store=tmp_path / "results.db", confirm_rounds=2, progress=lambda line: None)


def test_a_runner_killed_in_a_confirmation_loop_costs_that_loop(tmp_path, start_agent):
    client, agent = start_agent()
    result, model = _run(tmp_path, client, agent, arm_on="contender(s)", nth=1)
    assert result.lost and "a confirmation loop of" in result.lost[0], result.lost
    assert "lost: a confirmation loop" in (tmp_path / "out" / "report.html").read_text()
    again = _rerun(tmp_path, client, model)   # resumes every measured row, times the contenders again
    assert not again.lost
    assert all(r.resumed for r in again.devices[0].candidates)


def test_a_runner_killed_measuring_a_candidate_costs_that_row(tmp_path, start_agent):
    client, agent = start_agent()
    result, model = _run(tmp_path, client, agent, arm_on="baseline on", nth=1)
    failed = [r for r in result.devices[0].candidates if r.status == "failed"]
    assert len(failed) == 1 and "RUNNER_CRASHED" in failed[0].reason, failed
    assert "the same command again measures what was lost" in (tmp_path / "out" / "report.html").read_text()
    again = _rerun(tmp_path, client, model)
    assert all(r.status != "failed" for r in again.devices[0].candidates)
    assert {r.name for r in again.devices[0].candidates if not r.resumed} == {failed[0].name}


def test_a_runner_killed_profiling_the_baseline_costs_the_profile(tmp_path, start_agent):
    client, agent = start_agent()
    result, model = _run(tmp_path, client, agent, arm_on="", nth=2)   # the baseline's bench, then its profile
    assert result.lost and "the baseline's profile" in result.lost[0], result.lost
    assert result.devices[0].baseline.status == "ok"
    again = _rerun(tmp_path, client, model)   # the baseline is measured and profiled again, not resumed
    assert not again.lost and not again.devices[0].baseline.resumed
    assert all(r.resumed for r in again.devices[0].candidates)
