"""Every code block in README.md and docs/*.md runs as written.

Each Markdown file becomes one bash script, its blocks in order:

- ```bash / ```sh blocks run inline;
- ```python blocks run as `python - <<'EOF_PY' ... EOF_PY` (each one standalone, as a reader would copy it);
- a block after `<!-- file: NAME -->` is written to NAME in the working folder instead (any language);
- ```text blocks are sample output and do not run;
- a block after `<!-- not run: REASON -->` is skipped; the reason must say why;
- any other language tag, or none, fails: nothing goes unrun by accident.

Every port the page names for a server (`--port N`, `--metrics-port N`, `127.0.0.1:N`, `port=N`, N >= 1024)
is replaced, wherever N appears in the script, by a port free when the test starts (below the ephemeral
range), so pages run side by
side (pytest-xdist) and beside other work without colliding; the page keeps the ports a reader would type.

The script runs under `set -euo pipefail` in a fresh temporary folder, with the venv's bin first on PATH, a
temporary HOME and no EDGEFARM_* variables; an ERR trap names the failing FILE:LINE. It runs in its own
process group, which is killed when it ends, so an agent a page started in the background never outlives it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"bash", "sh", "python"}
FILE_RE = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->$")
NOT_RUN_RE = re.compile(r"^<!--\s*not run:(.*?)-->$")
FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)\s*$")
TIMEOUT_S = 480          # one page; the whole docs suite stays near 8 minutes on 2 cores
TAIL_LINES = 60


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int            # 1-based line of the opening fence
    lang: str
    body: str
    file: str | None     # <!-- file: NAME -->
    not_run: str | None  # <!-- not run: REASON --> (the reason, stripped)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the HTML comment right above it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        above = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        file_m, skip_m = FILE_RE.match(above), NOT_RUN_RE.match(above)
        out.append(Block(path, start + 1, lang, "\n".join(body) + "\n", file_m.group(1) if file_m else None,
                         skip_m.group(1).strip() if skip_m else None))
    return out


def problems(path: Path) -> list[str]:
    """Blocks that would go unrun without saying why."""
    bad = []
    for b in blocks(path):
        if b.not_run is not None:
            if not b.not_run:
                bad.append(f"{b.where}: `<!-- not run: -->` needs a reason")
        elif b.file is None and b.lang not in RUN_LANGS | {"text"}:
            bad.append(f"{b.where}: a ```{b.lang or '(no language)'} block neither runs nor is marked: tag it "
                       "bash, sh, python or text, put <!-- file: NAME --> or <!-- not run: REASON --> above it")
    return bad


def script(path: Path) -> tuple[str, dict[str, int]]:
    """The page as one bash script, and how many blocks run, are written to files, are output, are skipped."""
    counts = {"run": 0, "file": 0, "text": 0, "not run": 0}
    parts = ["set -euo pipefail",
             "trap 'echo \"docs example failed at $DOCS_AT (exit $?)\" >&2' ERR"]
    for b in blocks(path):
        if b.not_run is not None:
            counts["not run"] += 1
            continue
        if b.file is not None or b.lang != "text":
            parts.append(f"DOCS_AT='{b.where}'; echo \"== docs example $DOCS_AT (at ${{SECONDS}} s)\"")
        if b.file is not None:
            assert "EOF_FILE" not in b.body, b.where
            folder = os.path.dirname(b.file)
            parts.append((f"mkdir -p '{folder}'\n" if folder else "")
                         + f"cat > '{b.file}' <<'EOF_FILE'\n{b.body}EOF_FILE")
            counts["file"] += 1
        elif b.lang == "text":
            counts["text"] += 1
        elif b.lang == "python":
            assert "EOF_PY" not in b.body, b.where
            parts.append(f"python - <<'EOF_PY'\n{b.body}EOF_PY")
            counts["run"] += 1
        elif b.lang in ("bash", "sh"):
            parts.append(b.body.rstrip("\n"))
            counts["run"] += 1
    parts.append("DOCS_AT='(end)'")
    return "\n".join(parts) + "\n", counts


PORT_RE = re.compile(r"(?:--port |--metrics-port |127\.0\.0\.1:|localhost:|port=)(\d{4,5})\b")


def _free_port(taken: set[int]) -> int:
    """A port free now, below Linux's ephemeral range (32768-60999), so no agent started on port 0 elsewhere
    in the run can take it before the page's server binds it; random, so pages side by side differ."""
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(20000, 32000)
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def free_ports(text: str) -> str:
    """The script with each server port it names replaced by one that is free now (consistently)."""
    mapping: dict[str, str] = {}
    for port in sorted({m for m in PORT_RE.findall(text) if int(m) >= 1024}):
        mapping[port] = str(_free_port({int(v) for v in mapping.values()}))
    if not mapping:
        return text
    return re.sub(r"\b(" + "|".join(mapping) + r")\b", lambda m: mapping[m.group(1)], text)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGEFARM_") and k not in ("XDG_CACHE_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill_group(pgid: int) -> None:
    """SIGTERM the page's process group (agents it left running), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_blocks_are_tagged(path: Path) -> None:
    assert problems(path) == []


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    out, fence = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = FENCE_RE.match(line)
        if fence:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
        elif m:
            fence = m.group(2)
        else:
            out.append(line)
    return "\n".join(out)


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path).splitlines():
        if not line.startswith("#"):
            continue
        base = _anchor(line.lstrip("#"))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_links_resolve(path: Path) -> None:
    """Relative links point at files that exist, and #anchors at headings of their page."""
    text = _prose(path)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert bad == []


@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
@pytest.mark.slow   # runs every page's commands: agents, optimize, NAS
def test_examples_run(path: Path, tmp_path: Path) -> None:
    assert problems(path) == []
    text, counts = script(path)
    if counts["run"] == 0 and counts["file"] == 0:
        pytest.skip(f"{path.name}: no block runs ({counts['text']} output, {counts['not run']} not run)")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (tmp_path / "page.sh").write_text(free_ports(text))
    log = tmp_path / "output.log"
    with open(log, "wb") as out:   # a file, not a pipe: a background agent holding it open cannot stall us
        proc = subprocess.Popen(["bash", str(tmp_path / "page.sh")], cwd=work, env=_env(home), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _kill_group(proc.pid)
            proc.wait()
    output = log.read_text(errors="replace")
    tail = "\n".join(output.splitlines()[-TAIL_LINES:])
    failed = re.findall(r"docs example failed at (\S+)", output)
    started = re.findall(r"^== docs example (\S+) \(at \d+ s\)$", output, flags=re.M)
    where = failed[-1] if failed else started[-1] if started else "(before the first block)"
    assert rc is not None, f"{path.name} ran past {TIMEOUT_S} s (last block started: {where});\n{tail}"
    assert rc == 0, f"docs example failed at {where} (exit {rc});\n{tail}"
