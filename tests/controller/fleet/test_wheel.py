"""The wheel deploy ships: from this checkout (`pip wheel`), and from an edgefarm installed as a wheel (no
checkout anywhere), rebuilt from the installed files; the rebuilt wheel installs and runs the agent. (The pins deploy installs
with: tests/test_lock.py.)"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from controller.errors import DeviceError
from controller.fleet.wheel import build_wheel, wheel_from_installed

pytestmark = pytest.mark.slow   # builds and installs wheels with pip

ROOT = Path(__file__).resolve().parents[3]


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _run(code: str, path: Path, *args: str, cwd: Path) -> list[str]:
    """Python with only `path` holding edgefarm (PYTHONPATH first; the checkout is not on sys.path)."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def _check_record(whl: Path) -> list[str]:
    """The wheel's files, after checking every RECORD line's sha256 and size."""
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        for line in zf.read(record).decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if name == record:
                continue
            data = zf.read(name)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (want, len(data)), name
    return names


@pytest.mark.timeout(900)
def test_deploy_ships_the_installed_edgefarm_when_there_is_no_checkout(tmp_path):
    from_checkout = build_wheel(tmp_path / "checkout-wheel")
    assert from_checkout.source == f"checkout {ROOT}"
    site = tmp_path / "site"                                         # edgefarm installed as a wheel, not editable
    _pip("install", "--quiet", "--no-deps", "--target", str(site), str(from_checkout.path))
    out = tmp_path / "out"
    out.mkdir()
    module, source, built = _run(
        "import sys; from pathlib import Path; import controller.fleet.wheel as w; "
        "r = w.build_wheel(Path(sys.argv[1])); print(w.__file__); print(r.source); print(r.path)",
        site, str(out), cwd=tmp_path)
    assert module.startswith(str(site)) and source == f"installed {site}"
    names = _check_record(Path(built))
    for want in ("agent/server.py", "protos/agent_pb2.py", "protos/agent.proto", "core/inputs.py",
                 "controller/fleet/deploy.py", "controller/fleet/agent-constraints.txt",
                 "edgefarm-0.1.0.dist-info/METADATA", "edgefarm-0.1.0.dist-info/entry_points.txt"):
        assert want in names, want
    assert not [n for n in names if n.endswith(".pyc") or n.endswith("dist-info/INSTALLER")]
    assert Path(built).name == from_checkout.path.name            # the same name and tag: edgefarm-0.1.0-py3-none-any
    # the rebuilt wheel installs and its agent runs
    again = tmp_path / "again"
    _pip("install", "--quiet", "--no-deps", "--target", str(again), built)
    assert (again / "bin" / "farm-agent").exists()
    version = _run("import runpy, sys; sys.argv = ['farm-agent', '--version']; runpy.run_module('agent', "
                   "run_name='__main__')", again, cwd=tmp_path)
    assert version == [f"farm-agent {importlib.metadata.version('edgefarm')}"]


def test_an_install_without_metadata_says_what_to_do(tmp_path):
    (tmp_path / "agent").mkdir()
    with pytest.raises(DeviceError, match="no installed metadata.*pip install edgefarm"):
        wheel_from_installed(tmp_path, tmp_path)

