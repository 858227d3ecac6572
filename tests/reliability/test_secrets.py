"""Issue: `--token` showed in `ps` and was inherited by every runner. Now the token comes from a file or
the environment only, and runners do not get it."""

from __future__ import annotations

import subprocess
import sys

from agent.process import runner_env


def test_a_token_on_the_command_line_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "agent", "serve", "--port", "0", "--cache-dir", str(tmp_path),
                          "--token", "s3cret"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--token-file" in out.stderr and "EDGEFARM_TOKEN" in out.stderr


def test_runners_do_not_inherit_the_token(monkeypatch):
    monkeypatch.setenv("EDGEFARM_TOKEN", "s3cret")
    assert "EDGEFARM_TOKEN" not in runner_env()
