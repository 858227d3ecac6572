"""The embedded default: a farm-agent subprocess on 127.0.0.1, reached over real gRPC."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent import child_env, die_with_parent
from controller.errors import DeviceError
from controller.fleet.client import AgentClient, TLSFiles
from core.paths import cache_root

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0


def local_agent_dir() -> Path:
    """Cache folder of the embedded agent (kept between runs, so models are uploaded once)."""
    return cache_root() / "local-agent"


def _die_with_parent() -> None:
    """In the agent child: get SIGTERM when farmctl dies, even by kill -9, so no agent is orphaned."""
    die_with_parent(signal.SIGTERM)


class LocalAgent:
    """Starts `farm-agent serve --port 0` as a child process and stops it on exit."""

    def __init__(self, cache_dir: Path | None = None, extra_args: list[str] | None = None,
                 name: str = "local", tls: TLSFiles | None = None, port: int = 0,
                 cpus: set[int] | None = None, token: str | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else local_agent_dir()
        self.extra_args = list(extra_args or [])
        self.name = name
        self.tls = tls          # the client's certificate, for an agent started with --tls-* flags
        self.cpus = cpus        # pin the agent (and its runners) to these CPUs
        self.token = token      # the agent requires it (given in its environment), the client sends it
        self.proc: subprocess.Popen | None = None
        self.port = port
        self.client: AgentClient | None = None

    @property
    def log_path(self) -> Path:
        """Where the embedded agent's log goes."""
        return self.cache_dir / "agent.log"

    def start(self) -> AgentClient:
        """Start the agent, read its port, wait for the health check, return a client."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "agent", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--name", self.name, "--cache-dir", str(self.cache_dir), *self.extra_args]
        if self.cpus:
            cmd += ["--cpus", ",".join(str(c) for c in sorted(self.cpus))]
        # EDGEFARM_TOKEN in farmctl's environment is for the remote agents it talks to: the embedded agent
        # (loopback only, like every agent without a token) must not inherit it, or farmctl's own client,
        # which does not send it here, is refused; `token` gives it one that its client sends
        env = child_env()
        env.pop("EDGEFARM_TOKEN", None)
        if self.token:
            env["EDGEFARM_TOKEN"] = self.token
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL,
                                         env=env, preexec_fn=_die_with_parent)
        self.port = self._read_port()
        self.client = AgentClient(f"127.0.0.1:{self.port}", token=self.token, name=self.name, tls=self.tls)
        self.client.wait_ready(timeout=START_TIMEOUT_S)
        return self.client

    def _read_port(self) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                self.stop()
                raise DeviceError(f"the local farm-agent did not start within {START_TIMEOUT_S:.0f} s; "
                                  f"see {self.log_path}")
            chunk = os.read(self.proc.stdout.fileno(), 256)
            if not chunk:
                self.stop()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise DeviceError("the local farm-agent exited at start: " + " | ".join(tail))
            line += chunk
        sel.close()
        try:
            return int(line.decode().strip().rsplit(":", 1)[1])
        except (IndexError, ValueError):
            self.stop()
            raise DeviceError(f"the local farm-agent printed an unexpected first line: {line!r}") from None

    def stop(self) -> None:
        """Stop the agent (SIGTERM, then SIGKILL after 10 s)."""
        if self.client:
            self.client.close()
            self.client = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> AgentClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
