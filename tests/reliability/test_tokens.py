"""Issue (D4, D5): an empty token file (or one starting with a blank line) silently turned authentication
off; and EDGEFARM_TOKEN in farmctl's environment was inherited by the embedded agent, which then refused
farmctl's own client (`farmctl devices` showed local as UNREACHABLE)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.errors import DeviceError
from controller.fleet.client import AgentClient


@pytest.mark.parametrize(("content", "words"), [("", "is empty"), ("\n\n  \n", "is empty"),
                                                 ("two words\n", "more than one word")])
def test_an_empty_or_ambiguous_token_file_is_refused(tmp_path, content, words):
    token = tmp_path / "agent.token"
    token.write_text(content)
    out = subprocess.run([sys.executable, "-m", "agent", "serve", "--port", "0", "--cache-dir", str(tmp_path),
                          "--token-file", str(token)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(token) in out.stderr and words in out.stderr


def test_an_empty_token_in_the_environment_is_refused(tmp_path):
    env = {**os.environ, "EDGEFARM_TOKEN": "  "}
    out = subprocess.run([sys.executable, "-m", "agent", "serve", "--port", "0", "--cache-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "EDGEFARM_TOKEN is set but empty" in out.stderr


def test_a_token_after_a_blank_line_is_the_token(start_agent, tmp_path, conv_onnx):
    token = tmp_path / "agent.token"
    token.write_text("\nrealtoken\n")
    _, agent = start_agent("--token-file", str(token))
    anonymous = AgentClient(f"127.0.0.1:{agent.port}")
    with pytest.raises(DeviceError, match="unauthenticated"):
        anonymous.info()
    assert AgentClient(f"127.0.0.1:{agent.port}", token="realtoken").info().name == "test-agent"


def test_a_token_in_the_environment_does_not_break_the_local_agent(tmp_path):
    env = {**os.environ, "EDGEFARM_TOKEN": "for-the-remote-agents", "EDGEFARM_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "controller", "-q", "--store", str(tmp_path / "r.db"), "devices",
                          "--json"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (local,) = json.loads(out.stdout)
    assert local["name"] == "local" and local["status"] == "ok"
