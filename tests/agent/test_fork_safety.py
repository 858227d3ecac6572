"""Our processes fork only to exec. gRPC's fork handlers, on by default in grpcio, can crash such a child
between fork and exec (grpc/grpc#43055; once in CI: "the local farm-agent exited at start: ... epoll_wait
error: Bad file descriptor"), so importing our packages turns them off."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import subprocess, sys, threading
from controller.fleet.local import LocalAgent
agent = LocalAgent(cache_dir=sys.argv[1], name="fork")
client = agent.start()
stop = threading.Event()
def calls():
    while not stop.is_set():
        client.health()
worker = threading.Thread(target=calls)
worker.start()
for _ in range(30):   # fork (a preexec_fn rules out vfork, as LocalAgent's does) + exec while gRPC is busy
    subprocess.run(["true"], check=True, preexec_fn=lambda: None)
stop.set()
worker.join()
agent.stop()
"""


def _run(tmp_path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**base, **env})


def test_grpc_fork_handlers_are_off_in_our_processes(tmp_path):
    """With GRPC_ENABLE_FORK_SUPPORT=true this script hung here (past the 120 s limit), or logged that gRPC
    skipped its fork() handlers because other threads were inside gRPC."""
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fork() handlers" not in out.stderr and "Bad file descriptor" not in out.stderr
