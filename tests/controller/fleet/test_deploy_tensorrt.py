"""Which TensorRT path deploy reports for a device with the tensorrt backend, over real SSH (the throwaway
sshd on 127.0.0.1): the Python bindings where they import into the agent's venv, else trtexec where JetPack
puts it, else a warning that says what to install."""

from __future__ import annotations

import sys

from controller.fleet import deploy
from controller.fleet.ssh import Remote
from tests.controller.fleet.test_ssh import _config, _entry, _host


def _venv_python(home, pythonpath: str = "") -> None:
    """The agent venv's python: this interpreter, with an extra module path when given."""
    python = home / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    env = f"PYTHONPATH={pythonpath} " if pythonpath else ""
    python.write_text(f"#!/bin/sh\n{env}exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)


def test_deploy_says_which_tensorrt_path_the_agent_takes(sshd, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, _host(sshd, "jetson"))
    no_bindings, with_bindings = tmp_path / "jp5", tmp_path / "jp6"
    _venv_python(no_bindings)
    site = tmp_path / "site"
    site.mkdir()
    (site / "tensorrt.py").write_text("__version__ = '10.3.0'\n")   # JetPack 6's module, as the venv sees it
    _venv_python(with_bindings, str(site))
    trtexec = tmp_path / "usr" / "src" / "tensorrt" / "bin" / "trtexec"
    trtexec.parent.mkdir(parents=True)
    trtexec.write_text("#!/bin/sh\n")
    trtexec.chmod(0o755)
    with Remote(_entry(tmp_path, "{host: jetson}")) as remote:
        assert deploy.tensorrt_path(remote, str(with_bindings)) == "TensorRT 10.3.0 runs through its Python bindings"
        monkeypatch.setattr(deploy, "TRTEXEC", str(trtexec))
        said = deploy.tensorrt_path(remote, str(no_bindings))
        assert said == (f"TensorRT runs through {trtexec} (its Python bindings do not import: "
                        "ModuleNotFoundError: No module named 'tensorrt')")
        monkeypatch.setattr(deploy, "TRTEXEC", str(tmp_path / "nowhere" / "trtexec"))
        said = deploy.tensorrt_path(remote, str(no_bindings))
        assert said.startswith("warning: no TensorRT here") and "install JetPack's TensorRT" in said
