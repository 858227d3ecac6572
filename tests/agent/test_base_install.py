"""The agent must run on the base install (no onnx, yaml, matplotlib, torch: a Raspberry Pi's agent)."""

from __future__ import annotations

import subprocess
import sys

CONTROLLER_ONLY = ("onnx", "yaml", "matplotlib", "torch", "controller")


def test_agent_imports_nothing_from_the_controller_extra():
    code = ("import sys, agent.server, agent.runner, agent.backends.onnxruntime; "
            f"print(sorted(m for m in {CONTROLLER_ONLY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
