"""Helpers shared by the benchmark scripts: running farmctl, and writing a table into the README."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def farmctl(*args: str, env: dict | None = None) -> tuple[dict, float]:
    """Run `farmctl ... --json` as a real process; returns its JSON and its wall time in seconds."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "controller", "-q", *args, "--json"], capture_output=True,
                         text=True, env=full_env, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"farmctl failed: {out.stderr}")
    return json.loads(out.stdout), wall


def write_readme_section(name: str, text: str) -> None:
    """Replace the README block between <!-- NAME:start --> and <!-- NAME:end -->."""
    readme = ROOT / "README.md"
    body = readme.read_text()
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(body):
        raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    readme.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), body))


def machine() -> str:
    """One line naming this machine's CPU and core count."""
    from agent.device import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} logical CPUs"


def publish(name: str, text: str, write_readme: bool) -> int:
    """Print a benchmark's table and, when asked, put it into the README block NAME; returns 0."""
    print(text)
    if write_readme:
        write_readme_section(name, text)
    return 0
