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
from tests.controller.fleet.sshd import free_port


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


def test_the_ca_lives_in_the_user_data_folder_and_an_old_one_is_moved_there(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("EDGEFARM_CA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))          # platformdirs' user data dir on Linux
    monkeypatch.setenv("EDGEFARM_CACHE", str(tmp_path / "cache"))
    old = tmp_path / "cache" / "ca"
    ca.init_ca(old)                                                     # where edgefarm 0.1 put it
    ca.issue("pi-a", ["10.0.0.5"], ca_dir=old)
    new = ca.default_ca_dir()
    assert new == tmp_path / "data" / "edgefarm" / "ca"
    assert (new / "ca.key").read_bytes() and (new / "pi-a.pem").exists()
    assert (new / "ca.key").stat().st_mode & 0o077 == 0 and new.stat().st_mode & 0o077 == 0
    assert old.is_symlink() and (old / "ca.pem").read_bytes() == (new / "ca.pem").read_bytes()   # old paths work
    assert any(f"moved the farm CA from {old} to {new}" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert ca.default_ca_dir() == new and not caplog.records           # once
    monkeypatch.setenv("EDGEFARM_CA_DIR", str(tmp_path / "mine"))
    assert ca.default_ca_dir() == tmp_path / "mine"


def test_certificates_that_expire_within_30_days_are_named_with_the_fix(tmp_path):
    d = tmp_path / "ca"
    ca.init_ca(d, days=20)
    ca.issue("pi-soon", ["10.0.0.7"], ca_dir=d, days=10)
    ca.issue("farmctl", ca_dir=d, days=365)
    warnings = ca.expiry_warnings([d])
    assert len(warnings) == 2
    assert warnings[0].startswith(f"CA certificate 'edgefarm farm CA' ({d / 'ca.pem'}) expires in 19 days")
    assert "farmctl ca init --dir NEW" in warnings[0]
    assert warnings[1].startswith("agent certificate 'pi-soon'") and "expires in 9 days" in warnings[1]
    assert "farmctl ca issue pi-soon --host 10.0.0.7" in warnings[1] and "farmctl deploy pi-soon" in warnings[1]
    assert ca.expiry_warnings([d / "farmctl.pem", d / "farmctl.key"]) == []    # a year left; keys are skipped
    # farmctl ca list shows every certificate; ca list, farmctl devices and connecting warn on stderr
    out = subprocess.run([sys.executable, "-m", "controller", "ca", "list", "--dir", str(d)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split()[:2] for line in out.stdout.splitlines()]
    assert rows == [["name", "role"], ["edgefarm", "farm"], ["farmctl", "client"], ["pi-soon", "agent"]]
    assert out.stderr.count("farmctl: warning: ") == 2
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"tls: {{ca: ca/ca.pem, cert: ca/farmctl.pem, key: ca/farmctl.key}}\n"
                   f"devices:\n  pi-soon: {{address: '127.0.0.1:{free_port()}'}}\n")
    out = subprocess.run([sys.executable, "-m", "controller", "--inventory", str(inv), "devices", "--timeout", "2"],
                         capture_output=True, text=True, timeout=120)
    assert "agent certificate 'pi-soon'" in out.stderr and "CA certificate 'edgefarm farm CA'" in out.stderr
    assert out.stderr.count("expires in") == 2                            # each once
