"""The runner child processes of the job manager: how they are started (an environment without the
agent's secrets, killed when the agent dies), read, measured and stopped, and what a killed agent left."""

from __future__ import annotations

import json
import logging
import os
import queue
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import psutil

from agent import child_env, die_with_parent

log = logging.getLogger(__name__)


def runner_dies_with_agent() -> None:
    die_with_parent(signal.SIGKILL)   # a killed agent leaves no runner burning a core


def runner_preexec(memory_limit_bytes: int):
    """The runner's preexec_fn: it dies with the agent, and the kernel holds it to its memory limit
    (RLIMIT_DATA: heap and private writable mappings, what a model's tensors live in), so an allocation
    past the limit fails in the runner (MemoryError, or the runtime's allocation error) instead of growing
    between the agent's polls."""

    def preexec() -> None:
        runner_dies_with_agent()
        if memory_limit_bytes > 0:
            resource.setrlimit(resource.RLIMIT_DATA, (memory_limit_bytes, memory_limit_bytes))

    return preexec


def runner_env() -> dict[str, str]:
    """The runner's environment: the agent's, without its secrets (the bearer token)."""
    env = child_env()
    env.pop("EDGEFARM_TOKEN", None)
    return env


def clean_leftovers(work_root: Path) -> None:
    """At start: stop the runners a killed agent left orphaned (working folder under work_root, adopted by
    init) and remove the job folders of agents no longer running (named job-PID-...; another live agent
    sharing this cache keeps its own)."""
    root = str(work_root.resolve())
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            if proc.info["ppid"] == 1 and "agent.runner" in " ".join(proc.info["cmdline"] or []) \
                    and proc.cwd().startswith(root):
                log.warning("stopping runner %d left orphaned by an earlier agent", proc.pid)
                proc.kill()
        except (psutil.Error, OSError):
            continue
    for folder in work_root.glob("job-*"):
        owner = folder.name.split("-")[1]
        if not (owner.isdigit() and psutil.pid_exists(int(owner))):
            shutil.rmtree(folder, ignore_errors=True)


def rss_bytes(child: psutil.Process | None) -> int:
    try:
        return child.memory_info().rss if child else 0
    except psutil.Error:
        return 0


def pump(stream, lines: queue.Queue) -> None:
    for raw in stream:
        try:
            lines.put(json.loads(raw))
        except ValueError:
            log.warning("runner printed a non-event line: %r", raw[:200])
    lines.put(None)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
