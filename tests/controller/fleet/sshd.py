"""A throwaway sshd on 127.0.0.1 for the deployment tests (openssh-server from Debian's packages: installed
here when missing and we are root, else the tests that need it skip and say why), SSH keys, inventories
pointing at it, and farmctl run against them."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_sshd() -> None:
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


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SSHServer:
    port: int
    client_key: Path
    known_hosts: Path
    host_pub: str
    root: Path


@contextmanager
def running_sshd(d: Path, authorized_keys: Path | None = None, extra: str = "") -> Iterator[SSHServer]:
    """An sshd on 127.0.0.1 accepting one generated key (for any user); `extra` is more sshd_config."""
    ensure_sshd()
    if os.geteuid() != 0:
        pytest.skip("sshd with privilege separation needs root on this machine")
    host_pub = keygen(d / "host_key")
    authorized_keys = authorized_keys or d / "authorized_keys"
    authorized_keys.write_text(keygen(d / "client_key") + "\n")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized_keys}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        f"Subsystem sftp internal-sftp\n{extra}")
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
    try:
        yield SSHServer(port, d / "client_key", d / "known_hosts", host_pub, d)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def inventory(tmp_path: Path, server: SSHServer, agent_port: int, known_hosts: Path | None = None,
              key: Path | None = None) -> Path:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        "devices:\n  box:\n"
        f"    address: 127.0.0.1:{agent_port}\n    class: x86\n    backends: [onnxruntime]\n"
        f"    ssh:\n      host: 127.0.0.1\n      port: {server.port}\n      user: {os.environ.get('USER', 'root')}\n"
        f"      key: {key or server.client_key}\n      known_hosts: {known_hosts or server.known_hosts}\n"
        f"      python: {sys._base_executable}\n      install_dir: {tmp_path / 'device-home' / 'edgefarm'}\n")
    return inv


def farmctl(inv: Path, *args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", "--inventory", str(inv),
                           "--store", str(inv.parent / "r.db"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
