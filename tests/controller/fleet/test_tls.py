"""The farm CA and mutual TLS: certificates issued by `farmctl ca`, agents that serve only certified
clients, TLS from the inventory, and an agent that refuses to listen beyond loopback without TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.errors import DeviceError, FarmError
from controller.fleet import ca
from controller.fleet.client import AgentClient, TLSFiles
from controller.fleet.inventory import resolve_devices
from controller.fleet.local import LocalAgent
from controller.measure.api import bench
from tests.controller.fleet.common import FAST


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
