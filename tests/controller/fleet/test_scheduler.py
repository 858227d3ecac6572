"""The scheduler: agents of a class share the work, survive an agent SIGKILLed mid batch, fail clearly
when every agent is gone, take an agent back into rotation when it is healthy; an agent pinned to a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from controller.fleet.local import LocalAgent
from controller.fleet.scheduler import JobLost, Scheduler
from controller.measure.api import bench
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from tests.controller.fleet.common import FAST


def test_a_class_shares_the_work_and_survives_an_agent_killed_mid_batch(start_agent, tmp_path, conv_onnx):
    (a, _), (b, agent_b) = start_agent(name="board-a"), start_agent(name="board-b")
    store = ResultsStore(tmp_path / "r.db")
    first_started = threading.Event()
    slow = MeasureSettings(threads=1, warmup=2, min_iterations=20, min_seconds=0.4)

    def job(client):
        if client.name == "board-b":
            first_started.set()
        return bench(conv_onnx, client, slow, store)

    events: list[str] = []
    with Scheduler({"x86": {"board-a": a, "board-b": b}}, on_event=events.append) as sched:
        futures = [sched.submit("x86", f"job{i}", job) for i in range(8)]
        assert first_started.wait(60)
        agent_b.proc.kill()          # SIGKILL, mid-job
        results = []
        for f in futures:
            try:
                results.append(f.result(timeout=120))
            except JobLost as exc:   # only when every agent was gone; not expected with board-a alive
                pytest.fail(f"job lost: {exc}")
        assert sched.healthy("x86") == ["board-a"]
    assert len(results) == 8 and all(r.latency_ms["p50"] > 0 for r in results)
    done_on = [agent for _, agent in sched.assignments]
    assert "board-b" in done_on or any("board-b" in e for e in events)      # b did work before it died
    assert any("stopped answering" in e and "retrying" in e for e in events)
    rows = store.runs(kind="benchmark")
    assert {r["id"] for r in rows} >= {r.run_id for r in results}      # every finished result is stored
    store.close()


def test_jobs_fail_clearly_when_every_agent_of_the_class_is_gone(start_agent, conv_onnx, tmp_path):
    (a, agent_a) = start_agent(name="only")
    agent_a.proc.kill()
    agent_a.proc.wait()
    with Scheduler({"x86": {"only": a}}, max_retries=1) as sched:
        fut = sched.submit("x86", "bench", lambda c: bench(conv_onnx, c, FAST, tmp_path / "r.db"))
        with pytest.raises(JobLost, match="every agent of 'x86'.*only"):
            fut.result(timeout=60)
        later = sched.submit("x86", "later", lambda c: 1)
        with pytest.raises(JobLost, match="no agent was healthy"):
            later.result(timeout=10)


def test_an_agent_out_of_rotation_comes_back_when_healthy(start_agent, tmp_path, conv_onnx):
    (a, agent_a) = start_agent(name="flaky")
    port = agent_a.port
    agent_a.proc.kill()
    agent_a.proc.wait()
    back = threading.Event()
    with Scheduler({"x86": {"flaky": a}}, health_interval=0.2,
                   on_event=lambda line: "back in rotation" in line and back.set()) as sched:
        with pytest.raises(JobLost):
            sched.submit("x86", "first", lambda c: c.info()).result(timeout=30)
        assert sched.healthy("x86") == []
        revived = LocalAgent(cache_dir=tmp_path / "revived", name="flaky", port=port)
        revived.start()
        try:
            assert back.wait(30)
            assert sched.submit("x86", "second", lambda c: c.info().name).result(timeout=30) == "flaky"
        finally:
            revived.stop()


def test_an_agent_pinned_to_a_cpu_runs_its_jobs_there(start_agent, conv_onnx, tmp_path):
    import psutil

    cpu = max(os.sched_getaffinity(0))
    client, agent = start_agent("--cpus", str(cpu))
    assert psutil.Process(agent.proc.pid).cpu_affinity() == [cpu]
    assert bench(conv_onnx, client, FAST, tmp_path / "r.db").latency_ms["p50"] > 0
    bad = subprocess.run([sys.executable, "-m", "agent", "serve", "--cpus", "999"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "this machine offers CPUs" in bad.stderr
