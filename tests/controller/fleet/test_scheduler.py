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


@pytest.mark.slow   # agents killed mid-batch
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


def _agents_with_different_fingerprints(start_agent, tmp_path, monkeypatch):
    """Two real agents of one class; board-b runs where LiteRT cannot be imported (as on a board deployed
    without the tflite extra), so its GetInfo lists other backends and its fingerprint differs."""
    shim = tmp_path / "no-litert" / "ai_edge_litert"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('LiteRT is not installed on this board')\n")
    a, _ = start_agent(name="board-a")
    monkeypatch.setenv("PYTHONPATH", str(shim.parent))
    b, _ = start_agent(name="board-b")
    monkeypatch.delenv("PYTHONPATH")
    assert [x.name for x in b.info().backends] == ["onnxruntime"] and "tflite" in [x.name for x in a.info().backends]
    assert a.info().fingerprint != b.info().fingerprint
    return a, b


def test_agents_of_a_class_with_different_fingerprints_do_not_share_its_jobs(start_agent, tmp_path, monkeypatch):
    a, b = _agents_with_different_fingerprints(start_agent, tmp_path, monkeypatch)
    events: list[str] = []
    with Scheduler({"x86": {"board-a": a, "board-b": b}}, on_event=events.append) as sched:
        assert sched.healthy("x86") == ["board-a"] and sched.left_out == {"x86": ["board-b"]}
        names = [f.result(timeout=60) for f in [sched.submit("x86", f"j{i}", lambda c: c.name) for i in range(4)]]
    assert names == ["board-a"] * 4
    warning = next(e for e in events if "different fingerprints" in e)
    assert "tflite: board-a 2.3.0, board-b absent" in warning and "--allow-mixed" in warning
    assert any("left out: board-b" in e for e in events)


def test_allow_mixed_lets_them_share(start_agent, tmp_path, monkeypatch):
    a, b = _agents_with_different_fingerprints(start_agent, tmp_path, monkeypatch)
    both = threading.Barrier(2, timeout=60)       # each job waits for the other: done only if both agents run one

    def job(client):
        both.wait()
        return client.name

    events: list[str] = []
    with Scheduler({"x86": {"board-a": a, "board-b": b}}, on_event=events.append, allow_mixed=True) as sched:
        assert sched.healthy("x86") == ["board-a", "board-b"] and sched.left_out == {}
        names = sorted(f.result(timeout=90) for f in [sched.submit("x86", f"j{i}", job) for i in range(2)])
    assert names == ["board-a", "board-b"]
    assert any("different fingerprints" in e and "sharing its jobs anyway" in e for e in events)


def test_farmctl_devices_warns_about_a_class_of_mixed_fingerprints(start_agent, tmp_path, monkeypatch, caplog):
    from controller.fleet.devices import device_rows

    a, b = _agents_with_different_fingerprints(start_agent, tmp_path, monkeypatch)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"devices:\n  board-a: {{address: '{a.address}', class: x86}}\n"
                   f"  board-b: {{address: '{b.address}', class: x86}}\n")
    rows = {r.name: r for r in device_rows(inv)}
    assert rows["local"].warnings == [] and "warnings" not in rows["local"].to_json()
    assert rows["board-a"].to_json()["warnings"] == rows["board-a"].warnings
    assert rows["board-a"].to_json()["info"]["fingerprint"] == rows["board-a"].info["fingerprint"]
    assert rows["board-a"].warnings == rows["board-b"].warnings
    assert "agents of class 'x86' report different fingerprints" in rows["board-a"].warnings[0]
    assert any("different fingerprints" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_optimize_takes_allow_mixed_to_its_scheduler():
    from controller.cli.main import build_parser
    from controller.optimization.api import OptimizeOptions

    assert build_parser().parse_args(["optimize", "--device", "x86", "--allow-mixed"]).allow_mixed is True
    assert build_parser().parse_args(["optimize"]).allow_mixed is False and not OptimizeOptions().allow_mixed
