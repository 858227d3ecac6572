"""Issue: a corrupt store file and a model file name that is not UTF-8 ended in tracebacks. Now each is
one line (or simply works), and no output holds a Traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _farmctl(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEFARM_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True, cwd=cwd, env=env,
                          timeout=300)


def test_a_corrupt_store_is_one_line(tmp_path):
    (tmp_path / "corrupt.db").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    out = _farmctl("--store", "corrupt.db", "report", cwd=tmp_path)
    err = out.stderr.decode()
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    assert err.startswith("farmctl: error: 'corrupt.db' is not a usable results store") and err.count("\n") == 1


def test_a_model_file_name_that_is_not_utf8(tmp_path, conv_onnx):
    name = os.fsdecode(b"m\xff.onnx")
    shutil.copyfile(conv_onnx, tmp_path / name)
    out = _farmctl("--store", "r.db", "bench", name, "--min-seconds", "0", "--min-iterations", "3", cwd=tmp_path)
    assert out.returncode == 0 and b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")[-2000:]
    assert "m\ufffd on local" in out.stdout.decode()
