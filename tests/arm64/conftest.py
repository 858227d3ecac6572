"""The emulated arm64 Raspberry Pi (scripts/emulated_pi.py) as a session fixture.

These tests are slow (an arm64 Debian under qemu-user: minutes to build once, everything ~100x slower
than native), so `make test` (`pytest -q` over tests/) deselects them; they run when tests/arm64 is named
on the command line (`make test-arm64`) or with EDGEFARM_ARM64=1. They skip, saying why, only when this
is not root or qemu-user-static/binfmt_misc cannot be set up; any other failure is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.arm64.board import TIMINGS, emulated_pi

HERE = Path(__file__).resolve().parent
# under qemu-user everything is ~100x slower: a pip install of the agent takes minutes, not seconds
EMULATED_TIMEOUT_S = 2400


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "arm64: runs on the emulated arm64 board (make test-arm64)")


def _asked_for(config) -> bool:
    if os.environ.get("EDGEFARM_ARM64") == "1":
        return True
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config, items) -> None:
    mine = [i for i in items if HERE in Path(str(i.path)).parents]
    for item in mine:
        item.add_marker(pytest.mark.arm64)
        item.add_marker(pytest.mark.timeout(EMULATED_TIMEOUT_S))
    if mine and not _asked_for(config):
        config.hook.pytest_deselected(items=mine)
        items[:] = [i for i in items if i not in mine]


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("emulated Pi timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")


def _ensure_packages() -> None:
    """Debian's qemu-user-static, binfmt-support and debootstrap; installed here when root and missing."""
    if os.geteuid() != 0:
        pytest.skip("the emulated Pi needs root (chroot, bind mounts, binfmt_misc)")
    wanted = {"qemu-user-static": "qemu-aarch64-static", "binfmt-support": "update-binfmts",
              "debootstrap": "debootstrap"}
    missing = [pkg for pkg, exe in wanted.items() if not shutil.which(exe)]
    if not missing or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-q", *missing], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", *missing]):
        done = subprocess.run(cmd, capture_output=True, env=env, timeout=900)
        if cmd[1] == "install" and done.returncode == 0:
            return
    pytest.skip(f"could not install {' '.join(missing)} with apt-get: {done.stderr.decode()[-300:]}")


@pytest.fixture(scope="session")
def emulated_board() -> Iterator[emulated_pi.Board]:
    """A running emulated Pi: sshd on 127.0.0.1, user `pi` with a throwaway key; torn down at the end."""
    _ensure_packages()
    try:
        emulated_pi.check_host()
    except emulated_pi.EmulatorError as exc:
        pytest.skip(f"qemu/binfmt cannot be set up here: {exc}")
    t0 = time.monotonic()
    built = (emulated_pi.cache_dir() / "complete").exists()
    emulated_pi.build(progress=lambda line: print(line, file=sys.stderr))
    TIMINGS["root build" if not built else "root build (cached: checked and reused)"] = time.monotonic() - t0
    t0 = time.monotonic()
    board = emulated_pi.start(progress=lambda line: print(line, file=sys.stderr))
    TIMINGS["sshd start (mounts, keys, sshd listening)"] = time.monotonic() - t0
    try:
        yield board
    finally:
        emulated_pi.stop()
        assert not emulated_pi.processes_in(Path(board.root)), "processes were left running in the root"
        assert not emulated_pi._mounts_under(Path(board.root)), "mounts were left under the root"


@pytest.fixture(scope="session")
def board_ssh(emulated_board):
    """One paramiko session to the board as `pi`, for the tests' own commands."""
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(emulated_board.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(emulated_board.host, port=emulated_board.port, username=emulated_board.user,
                   key_filename=emulated_board.key, look_for_keys=False, allow_agent=False, timeout=60,
                   banner_timeout=60, auth_timeout=60)
    yield client
    client.close()

