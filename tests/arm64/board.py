"""Helpers for the emulated-board tests: scripts/emulated_pi.py loaded as a module, commands over SSH."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}       # printed at the end of the session (conftest's terminal summary)


def _load_script():
    if "emulated_pi" in sys.modules:
        return sys.modules["emulated_pi"]
    spec = importlib.util.spec_from_file_location("emulated_pi", REPO / "scripts" / "emulated_pi.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["emulated_pi"] = module
    spec.loader.exec_module(module)
    return module


emulated_pi = _load_script()


def run_on(client, command: str, timeout: float = 1800) -> tuple[int, str, str]:
    """Run a command on the board over SSH; (exit status, stdout, stderr)."""
    _, out, err = client.exec_command(command, timeout=timeout)
    stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return out.channel.recv_exit_status(), stdout, stderr
