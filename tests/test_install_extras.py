"""The extras match the roles (pyproject.toml): farmctl's measuring and fleet commands run on a `[farm]`
install, with no torch; a command that needs a missing extra says in one line which one to install.

No venv is built here: each farmctl runs in a child Python whose import system refuses every installed
package outside the dependency closure of the extras under test (computed from pyproject.toml and the
installed packages' own metadata), as a venv with only those extras would."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from core.extras import EXTRA_OF

tomllib = pytest.importorskip("tomllib")   # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OURS = {"agent", "controller", "core", "optimizers", "protos", "tests"}
IN_EVERY_VENV = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}
MISSING: set[str] = set()
FAST = ["--warmup", "2", "--min-iterations", "10", "--min-seconds", "0.05", "--threads", "1"]

# the child: refuse the blocked top-level modules, then run farmctl's console-script entry point
CHILD = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCKED = set(json.loads(sys.argv[1]))
    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, NotInstalled())
    from controller.cli import main
    raise SystemExit(main(sys.argv[2:]))
""")


def closure(extras: list[str]) -> set[str]:
    """The distributions a venv with edgefarm[extras] holds: pyproject's requirements, then each installed
    distribution's own requirements, recursively (markers evaluated here, extras followed)."""
    optional = PROJECT["optional-dependencies"]
    todo = [Requirement(r) for r in PROJECT["dependencies"]] + [Requirement(r) for e in extras for r in optional[e]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "edgefarm":
            todo += [Requirement(r) for e in req.extras for r in optional[e]]
            continue
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            MISSING.add(name)      # not installed here (checked empty for the farm extra)
            continue
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return seen


def blocked_modules(extras: list[str]) -> list[str]:
    """Top-level modules of installed distributions that a venv with only edgefarm[extras] lacks."""
    allowed = closure(extras)
    return sorted(mod for mod, dists in md.packages_distributions().items()
                  if mod not in OURS | IN_EVERY_VENV and not any(canonicalize_name(d) in allowed for d in dists))


def farmctl(extras: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    blocked = json.dumps(blocked_modules(extras))
    return subprocess.run([sys.executable, "-c", CHILD, blocked, "-q", "--store", str(cwd / "r.db"), *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=_env(cwd))


def _env(cwd: Path) -> dict[str, str]:
    (cwd / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "EDGEFARM_STORE" and not k.startswith("XDG_")}
    env.update(PYTHONPATH=str(ROOT), HOME=str(cwd / "home"))
    return env


def test_farm_extra_has_no_torch_and_the_block_is_real():
    MISSING.clear()
    blocked = set(blocked_modules(["farm"]))
    assert not MISSING, f"the farm extra's closure is not installed here: {MISSING}"
    assert {"torch", "torch_pruning", "mlxtend", "sklearn", "transformers", "scipy"} <= blocked
    assert not {"onnx", "onnxruntime", "grpc", "yaml", "matplotlib", "PIL", "paramiko", "pandas"} & blocked
    base = set(blocked_modules([]))
    assert {"onnx", "yaml", "paramiko", "torch"} <= base and "onnxruntime" not in base


@pytest.mark.parametrize("module,extra", sorted(EXTRA_OF.items()))
def test_each_optional_module_is_in_the_extra_the_messages_name(module, extra):
    """core.extras tells users which extra brings a module: it must, and no smaller role may."""
    dists = md.packages_distributions().get(module)
    if not dists:
        pytest.skip(f"{module} is not installed here (an extra outside dev)")
    smaller = {"farm": [], "optimize": ["farm"], "examples": ["farm"], "dev": ["optimize", "examples"]}
    dist = canonicalize_name(dists[0])
    assert dist in closure([extra]), f"{module} ({dist}) is not installed by edgefarm[{extra}]"
    if extra in smaller:
        assert dist not in closure(smaller[extra]), f"{module} ({dist}) already comes with {smaller[extra]}"


def test_controller_extra_is_kept_as_optimize_and_examples():
    assert closure(["controller"]) == closure(["optimize", "examples"])
    assert closure(["optimize", "examples"]) < closure(["dev"])
    assert PROJECT["license"] == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]


@pytest.mark.slow   # seven farmctl processes
def test_farm_commands_run_without_torch(tmp_path, conv_onnx, shared_agent):
    """bench on the embedded agent, profile and bench on a real agent process, compare, show, report (pandas),
    devices, ca, completion, fuse."""
    _, agent = shared_agent
    device = f"127.0.0.1:{agent.port}"
    for args in (["bench", str(conv_onnx), "--device", "local", "--json", *FAST],
                 ["profile", str(conv_onnx), "--device", device, "--iterations", "5", "--warmup", "1",
                  "--plot", "layers.png"],
                 ["bench", str(conv_onnx), "--device", device, *FAST], ["compare", "1", "3"], ["show", "2"],
                 ["report"], ["report", "--format", "json", "-o", "runs.json"],
                 ["report", "--format", "html", "-o", "report.html"], ["devices"],
                 ["ca", "init"], ["completion", "bash"], ["fuse", str(conv_onnx), "-o", "fused.onnx"]):
        out = farmctl(["farm"], *args, cwd=tmp_path)
        assert out.returncode == 0, f"farmctl {' '.join(args)} on a [farm] install: {out.stderr}"
        assert "Traceback" not in out.stderr
    report = farmctl(["farm"], "report", cwd=tmp_path).stdout
    assert "benchmark" in report and "profile" in report and (tmp_path / "layers.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "runs.json").read_text())["runs"]) == 3


@pytest.mark.parametrize("extras,args,extra", [
    (["farm"], ["optimize"], "optimize"),                                  # the digits example: torch
    (["farm"], ["quantize", "MODEL", "--method", "int4", "-o", "q.onnx"], "optimize"),   # onnx-ir
    (["optimize"], ["optimize", "--techniques", "int8-minmax"], "examples"),   # torch, but not the digits
    ([], ["bench", "MODEL"], "farm"),                                      # the agent's install: no onnx
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, conv_onnx, extras, args, extra):
    args = [str(conv_onnx) if a == "MODEL" else a for a in args]
    out = farmctl(extras, *args, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert f"pip install 'edgefarm[{extra}]'" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
