"""The fleet: inventory validation, classes, the farm CA and mutual TLS, zeroconf discovery on the
loopback interface, and the scheduler sharing work between agents of a class and surviving a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.errors import DeviceError, FarmError
from controller.fleet import ca
from controller.fleet.client import AgentClient, TLSFiles
from controller.fleet.inventory import (
    InventoryError,
    check_version,
    load_inventory,
    parse_inventory,
    resolve_devices,
)
from controller.fleet.local import LocalAgent
from controller.fleet.scheduler import JobLost, Scheduler
from controller.measure.api import bench
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore

FAST = MeasureSettings(threads=1, warmup=2, min_iterations=20, min_seconds=0.05)

FLEET = """\
tls:
  ca: ca/ca.pem
  cert: ca/farmctl.pem
  key: ca/farmctl.key
devices:
  local:
    embedded: true
  pi-a:
    address: 10.0.0.5:50551
    class: rpi4
    labels: {room: lab, camera: "yes"}
    backends: [onnxruntime, tflite]
    ssh: {user: pi, key: ~/.ssh/id_ed25519}
  pi-b:
    address: 10.0.0.6:50551
    class: rpi4
  orin:
    address: 10.0.0.7:50551
    class: jetson-orin
    backends: [tensorrt]
    token_env: ORIN_TOKEN
"""


def test_inventory_reads_classes_labels_ssh_and_tls(tmp_path):
    devices = parse_inventory(FLEET, tmp_path / "inventory.yaml")
    assert set(devices) == {"local", "pi-a", "pi-b", "orin"}
    pi = devices["pi-a"]
    assert (pi.device_class, pi.labels, pi.backends, pi.line) == ("rpi4", {"room": "lab", "camera": "yes"},
                                                                  ["onnxruntime", "tflite"], 8)
    assert (pi.ssh.host, pi.ssh.user, pi.ssh.port, pi.ssh.agent_port) == ("10.0.0.5", "pi", 22, 50551)
    assert pi.tls.ca == str(tmp_path / "ca" / "ca.pem")           # relative to the inventory file
    assert devices["local"].embedded and devices["local"].tls is None
    assert [e.name for e in resolve_devices("rpi4", devices)] == ["pi-a", "pi-b"]
    assert [e.name for e in resolve_devices("orin", devices)] == ["orin"]
    with pytest.raises(DeviceError, match=r"unknown device 'rpi' \(did you mean 'rpi4'\?\).*classes: "
                                          r"jetson-orin, rpi4"):
        resolve_devices("rpi", devices)


@pytest.mark.parametrize("text, error", [
    ("devices:\n  pi:\n    adress: 1.2.3.4:1\n",
     r"inventory.yaml:3: unknown field 'adress' in device 'pi' \(did you mean 'address'\?\)"),
    ("devices:\n  pi:\n    class: rpi4\n", r"inventory.yaml:2: device 'pi' needs an address"),
    ("devices:\n  pi:\n    address: nowhere\n", r"inventory.yaml:3: device 'pi': address 'nowhere' must be HOST:PORT"),
    ("devices:\n  pi:\n    address: a:1\n    backends: [onnxruntime, tensort]\n",
     r"inventory.yaml:4: device 'pi': unknown backend 'tensort' \(did you mean 'tensorrt'\?\)"),
    ("devices:\n  pi:\n    address: a:1\n    backends: tflite\n", r"inventory.yaml:4: .*backends must be a list"),
    ("devices:\n  pi:\n    address: a:1\n    ssh:\n      port: ssh\n",
     r"inventory.yaml:5: device 'pi': ssh: port must be a port number"),
    ("devices:\n  pi:\n    address: a:1\n    ssh: {usr: pi}\n", r"inventory.yaml:4: unknown field 'usr'.*'user'"),
    ("devices:\n  pi:\n    address: a:1\n    tls: {ca: x}\n", r"inventory.yaml:4: device 'pi': tls needs cert, key"),
    ("devices:\n  pi:\n    address: a:1\n  pi:\n    address: b:2\n", r"inventory.yaml:4: 'pi' appears twice"),
    ("devices:\n  x86:\n    address: a:1\n  box:\n    address: b:2\n    class: x86\n",
     r"inventory.yaml:2: device name 'x86' is also a class"),
    ("devices:\n  pi: [1, 2]\n", r"inventory.yaml:2: device 'pi' must be a mapping"),
    ("devices:\n  pi:\n    address: a:1\n   class: x\n", r"inventory.yaml:4: not valid YAML"),
    ("device:\n  pi: {}\n", r"inventory.yaml:1: unknown field 'device' in the inventory \(did you mean 'devices'"),
])
def test_inventory_errors_name_the_line_and_the_fix(text, error):
    with pytest.raises(InventoryError, match=error):
        parse_inventory(text, "inventory.yaml")


def test_missing_inventory_file_is_a_clear_error(tmp_path):
    with pytest.raises(InventoryError, match="does not exist; pass --inventory FILE"):
        load_inventory(tmp_path / "nope.yaml")


def test_an_agent_of_another_version_is_named_with_the_fix():
    client = SimpleNamespace(name="pi-a", address="10.0.0.5:50551")
    with pytest.raises(DeviceError, match=r"farm-agent 'pi-a' at 10.0.0.5:50551 runs edgefarm 0.0.3 but farmctl is "
                                          r".*farmctl deploy pi-a"):
        check_version(client, SimpleNamespace(agent_version="0.0.3"))
    import agent

    check_version(client, SimpleNamespace(agent_version=agent.__version__))


# ---- the farm CA and mutual TLS ------------------------------------------------------------------

@pytest.fixture(scope="module")
def farm_ca(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    ca.init_ca(d)
    ca.issue("agent-1", ["127.0.0.1", "localhost"], ca_dir=d)
    ca.issue("farmctl", ca_dir=d)
    return d


def _tls(d: Path, name: str) -> TLSFiles:
    return TLSFiles.read(d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")


def _tls_args(d: Path) -> list[str]:
    return ["--tls-ca", str(d / "ca.pem"), "--tls-cert", str(d / "agent-1.pem"), "--tls-key", str(d / "agent-1.key")]


def test_ca_refuses_to_overwrite_and_keys_are_private(farm_ca):
    with pytest.raises(FarmError, match="a farm CA already exists"):
        ca.init_ca(farm_ca)
    with pytest.raises(FarmError, match="already exists; pick another name"):
        ca.issue("farmctl", ca_dir=farm_ca)
    with pytest.raises(FarmError, match="must be letters"):
        ca.issue("../evil", ca_dir=farm_ca)
    assert (farm_ca / "ca.key").stat().st_mode & 0o077 == 0
    assert (farm_ca / "farmctl.key").stat().st_mode & 0o077 == 0


def test_mutual_tls_serves_certified_clients_and_refuses_others(farm_ca, tmp_path, conv_onnx, monkeypatch):
    agent = LocalAgent(cache_dir=tmp_path / "agent", name="secure", extra_args=_tls_args(farm_ca),
                       tls=_tls(farm_ca, "farmctl"))
    client = agent.start()
    try:
        assert client.info().name == "secure"
        assert bench(conv_onnx, client, FAST, tmp_path / "r.db").latency_ms["p50"] > 0
        address = f"127.0.0.1:{agent.port}"
        # a running agent is never called unreachable ("start it there") for a failed TLS session
        with pytest.raises(DeviceError, match="refused the TLS handshake|requires mutual TLS|accepts connections"):
            AgentClient(address, name="plain").info(timeout=5)
        other = tmp_path / "other-ca"
        ca.init_ca(other)
        ca.issue("intruder", ca_dir=other)
        with pytest.raises(DeviceError, match="secure|TLS"):
            AgentClient(address, name="secure", tls=_tls(other, "intruder")).info(timeout=5)
        # an agent's certificate (role agent: TLS server only) cannot act as a client of another agent
        with pytest.raises(DeviceError, match="secure"):
            AgentClient(address, name="secure", tls=_tls(farm_ca, "agent-1")).info(timeout=5)
        # HOST:PORT with the certificate from the environment (EDGEFARM_TLS_CA/_CERT/_KEY)
        for k, f in (("CA", "ca.pem"), ("CERT", "farmctl.pem"), ("KEY", "farmctl.key")):
            monkeypatch.setenv(f"EDGEFARM_TLS_{k}", str(farm_ca / f))
        with resolve_devices(address, {})[0].client() as env_client:
            assert env_client.info().name == "secure"
        # a certificate without a key: the client says which file is missing
        with pytest.raises(DeviceError, match="cannot read the TLS private key"):
            TLSFiles.read(farm_ca / "ca.pem", farm_ca / "farmctl.pem", farm_ca / "missing.key")
    finally:
        agent.stop()


def test_farmctl_ca_cli_and_tls_from_the_inventory(tmp_path, monkeypatch):
    d = tmp_path / "ca"
    env = {**os.environ, "EDGEFARM_CA_DIR": str(d)}
    for args in (["ca", "init"], ["ca", "issue", "agent-1", "--host", "127.0.0.1"], ["ca", "issue", "farmctl"]):
        out = subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True, text=True, env=env,
                             timeout=60)
        assert out.returncode == 0, out.stderr
    assert "farm-agent serve" in out.stdout and "--tls-cert" in out.stdout
    agent = LocalAgent(cache_dir=tmp_path / "agent", name="pi-a", extra_args=_tls_args(d), tls=_tls(d, "farmctl"))
    agent.start()
    try:
        inv = tmp_path / "inventory.yaml"
        inv.write_text(f"tls: {{ca: ca/ca.pem, cert: ca/farmctl.pem, key: ca/farmctl.key}}\n"
                       f"devices:\n  pi-a:\n    address: 127.0.0.1:{agent.port}\n    class: x86\n")
        out = subprocess.run([sys.executable, "-m", "controller", "--inventory", str(inv), "--store",
                              str(tmp_path / "r.db"), "bench", "--device", "x86", "--min-iterations", "10",
                              "--min-seconds", "0.02", "--json"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["device"] == "pi-a"
    finally:
        agent.stop()


def test_agent_refuses_to_listen_beyond_loopback_without_tls(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent", "serve", "--host", "0.0.0.0", "--port", "0",
                           "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0 without TLS" in proc.stderr and "farmctl ca issue" in proc.stderr


# ---- discovery on the loopback interface --------------------------------------------------------

def test_discovery_finds_advertised_agents_and_devices_merges_them(start_agent, tmp_path):
    from controller.fleet.discovery import discover

    start_agent("--advertise", "--device-class", "rpi5", name="found-me")
    found = {a.name: a for a in discover(timeout=10, interfaces=["127.0.0.1"], expect={"found-me"})}
    assert "found-me" in found
    agent = found["found-me"]
    assert agent.device_class == "rpi5" and "onnxruntime" in agent.backends and agent.address.startswith("127.0.0.1:")
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local:\n    embedded: true\n")
    out = subprocess.run([sys.executable, "-m", "controller", "--inventory", str(inv), "devices", "--interface",
                          "127.0.0.1", "--discover-seconds", "3", "--json"], capture_output=True, text=True,
                         timeout=120)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["found-me"]["source"] == "discovered" and rows["found-me"]["status"] == "ok"
    assert rows["found-me"]["class"] == "rpi5" and rows["local"]["source"] == "inventory"


# ---- the scheduler: classes, sharing, retries, health rotation ----------------------------------

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
