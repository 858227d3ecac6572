"""`farmctl deploy / logs / undeploy` against a real sshd that the test starts on 127.0.0.1 (openssh-server
from Debian's packages: installed here when missing and we are root, else the test says why it skips)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.errors import DeviceError
from controller.fleet.inventory import parse_inventory

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_sshd() -> None:
    if Path(SSHD).exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("openssh-server is not installed and this user cannot install it (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-q", "openssh-server"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "openssh-server"]):
        done = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
        if cmd[1] == "install" and done.returncode == 0:
            return
    pytest.skip(f"openssh-server could not be installed with apt-get: {done.stderr.decode()[-300:]}")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SSHServer:
    port: int
    client_key: Path
    known_hosts: Path
    host_pub: str
    root: Path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[SSHServer]:
    """A throwaway sshd on 127.0.0.1 that accepts one generated key for the current user."""
    _ensure_sshd()
    if os.geteuid() != 0:
        pytest.skip("sshd with privilege separation needs root on this machine")
    d = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(d / "host_key")
    (d / "authorized_keys").write_text(_keygen(d / "client_key") + "\n")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n")
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    seen, deadline = b"", time.monotonic() + 30
    while b"Server listening" not in seen:                 # sshd says when it listens: no sleeping
        if time.monotonic() > deadline or not sel.select(timeout=deadline - time.monotonic()):
            proc.kill()
            pytest.fail(f"sshd did not start: {seen.decode(errors='replace')}")
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            pytest.fail(f"sshd exited: {seen.decode(errors='replace')}")
        seen += chunk
    sel.close()
    yield SSHServer(port, d / "client_key", d / "known_hosts", host_pub, d)
    proc.terminate()
    proc.wait(timeout=10)


def _inventory(tmp_path: Path, server: SSHServer, agent_port: int, known_hosts: Path | None = None,
               key: Path | None = None) -> Path:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "devices:\n  box:\n"
        f"    address: 127.0.0.1:{agent_port}\n    class: x86\n    backends: [onnxruntime]\n"
        f"    ssh:\n      host: 127.0.0.1\n      port: {server.port}\n      user: {os.environ.get('USER', 'root')}\n"
        f"      key: {key or server.client_key}\n      known_hosts: {known_hosts or server.known_hosts}\n"
        f"      python: {sys._base_executable}\n      install_dir: {tmp_path / 'device-home' / 'edgefarm'}\n")
    return inv


def _farmctl(inv: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", "--inventory", str(inv),
                           "--store", str(inv.parent / "r.db"), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_deploy_logs_undeploy_over_real_ssh(sshd, tmp_path, conv_onnx):
    agent_port = _free_port()
    inv = _inventory(tmp_path, sshd, agent_port)
    out = _farmctl(inv, "deploy", "box")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "no systemd: a background process" in out.stderr or "systemd" in out.stderr
    assert "farm-agent is up" in out.stderr
    home = tmp_path / "device-home" / "edgefarm"
    assert (home / "venv" / "bin" / "farm-agent").exists() and list((home / "wheels").glob("edgefarm-*.whl"))
    rows = {r["name"]: r for r in json.loads(_farmctl(inv, "devices", "--json").stdout)}
    assert rows["box"]["status"] == "ok" and rows["box"]["info"]["name"] == "box"
    bench = _farmctl(inv, "bench", str(conv_onnx), "--device", "x86", "--min-iterations", "10",
                     "--min-seconds", "0.02", "--json")
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["device"] == "box"
    logs = _farmctl(inv, "logs", "box", "-n", "20")
    assert logs.returncode == 0 and "farm-agent listening on 127.0.0.1" in logs.stdout
    # deploying again replaces the running agent
    again = _farmctl(inv, "deploy", "box")
    assert again.returncode == 0, again.stderr[-2000:]
    gone = _farmctl(inv, "undeploy", "box")
    assert gone.returncode == 0, gone.stderr
    assert not home.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", agent_port)) != 0     # nothing listens any more


def test_a_changed_host_key_is_refused_with_the_fix(sshd, tmp_path):
    other = tmp_path / "other_host"
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {_keygen(other)}\n")
    out = _farmctl(_inventory(tmp_path, sshd, _free_port(), known_hosts=wrong), "deploy", "box", timeout=120)
    assert out.returncode == 1
    assert "device 'box': the SSH host key of 127.0.0.1 CHANGED" in out.stderr and "ssh-keygen" in out.stderr


def test_an_unknown_host_key_and_a_refused_login_are_clear(sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    out = _farmctl(_inventory(tmp_path, sshd, _free_port(), known_hosts=empty), "deploy", "box", timeout=120)
    assert out.returncode == 1 and "is not in" in out.stderr and "--accept-new-host-key" in out.stderr
    stranger = tmp_path / "stranger"
    _keygen(stranger)
    out = _farmctl(_inventory(tmp_path, sshd, _free_port(), key=stranger), "logs", "box", timeout=120)
    assert out.returncode == 1 and "device 'box': SSH refused" in out.stderr and "authorized_keys" in out.stderr


def test_unreachable_ssh_and_missing_tls_are_clear(tmp_path):
    from controller.fleet.deploy import deploy

    devices = parse_inventory(f"devices:\n  pi:\n    address: 10.1.2.3:50551\n    ssh: {{user: pi}}\n"
                              f"  near:\n    address: 127.0.0.1:{_free_port()}\n"
                              f"    ssh: {{host: 127.0.0.1, port: {_free_port()}, known_hosts: {tmp_path / 'k'}}}\n",
                              tmp_path / "inventory.yaml")
    with pytest.raises(DeviceError, match="device 'pi' has no `tls:`.*farmctl ca init"):
        deploy(devices["pi"])
    with pytest.raises(DeviceError, match="device 'near': cannot open SSH to .*is the device on and sshd running"):
        deploy(devices["near"])
