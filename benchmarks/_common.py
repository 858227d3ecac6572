"""Helpers shared by the benchmark scripts: running farmctl, and writing a table into docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"   # where --write-docs puts the tables, between <!-- NAME:start/end -->


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


def write_docs_section(name: str, text: str) -> None:
    """Replace the docs/benchmarks.md block between <!-- NAME:start --> and <!-- NAME:end -->."""
    body = DOCS.read_text()
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(body):
        raise SystemExit(f"docs/benchmarks.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    DOCS.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), body))


write_readme_section = write_docs_section   # the old name (the tables lived in the README)


def machine() -> str:
    """One line naming this machine's CPU and core count."""
    from agent.device import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} logical CPUs"


def publish(name: str, text: str, write_readme: bool) -> int:
    """Print a benchmark's table and, when asked, put it into the docs/benchmarks.md block NAME; returns 0."""
    print(text)
    if write_readme:
        write_readme_section(name, text)
    return 0
