"""The pins the repository owns agree with each other: constraints.txt (what make setup, make demo and CI
install), the agent's deploy pins derived from it, and pyproject.toml's ranges. Nothing here asks what PyPI
serves today or what this environment happens to run (`make lock` and `make test-latest` are for that)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from controller.fleet.deploy import CONSTRAINTS as AGENT

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"

# the lock is for the Python the suite and CI run (3.11, Linux); the agent's pins for its boards: 3.10 (JetPack
# 6) to 3.13, x86_64 and aarch64
LOCKED = ("3.11.7", "linux", "x86_64")
BOARDS = [(py, "linux", machine) for py in ("3.10.12", "3.11.7", "3.12.3", "3.13.1") for machine in ("x86_64", "aarch64")]


def _pins(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            req = Requirement(line)
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", f"{path.name}: {line}"
            reqs.append(req)
    return reqs


def _env(py: str, system: str, machine: str) -> dict[str, str]:
    env = default_environment()
    env.update(python_version=py.rsplit(".", 1)[0], python_full_version=py, sys_platform=system,
               platform_machine=machine, platform_system={"linux": "Linux", "darwin": "Darwin"}.get(system, "Windows"),
               implementation_name="cpython", platform_python_implementation="CPython", os_name="posix")
    return env


def _versions(pins: list[Requirement], env: dict[str, str]) -> dict[str, str]:
    """name -> the one version pinned for `env` (two pins of one name for the same machine is an error)."""
    chosen: dict[str, str] = {}
    for req in pins:
        if req.marker is None or req.marker.evaluate(env):
            name = canonicalize_name(req.name)
            version = next(iter(req.specifier)).version
            assert chosen.get(name, version) == version, f"two pins of {name} for {env['python_full_version']}"
            chosen[name] = version
    return chosen


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("py,system,machine", BOARDS)
def test_every_board_gets_one_pin_of_each_runtime(py, system, machine):
    agent = _versions(_pins(AGENT), _env(py, system, machine))
    wanted = {canonicalize_name(Requirement(r).name) for r in _project()["dependencies"]} | {"ai-edge-litert"}
    assert wanted <= set(agent), f"no pin for {sorted(wanted - set(agent))} on Python {py}; run make lock"


def test_the_agent_pins_are_the_locked_versions():
    """On the Python the suite runs, deploy installs exactly what the suite tested."""
    env = _env(*LOCKED)
    lock, agent = _versions(_pins(LOCK), env), _versions(_pins(AGENT), env)
    differ = {n: (v, lock.get(n)) for n, v in agent.items() if lock.get(n) != v}
    assert not differ, f"agent-constraints.txt and constraints.txt disagree (agent, lock): {differ}; run make lock"


def test_the_lock_pins_every_dependency_within_its_range():
    env = _env(*LOCKED)
    lock = _versions(_pins(LOCK), env)
    project = _project()
    wanted = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra != "litert-torch":             # about 2 GB, never installed by make or CI: not locked
            wanted += [r for r in reqs if not r.startswith("edgefarm[")]
    for line in wanted:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"{name} is not in constraints.txt; run make lock"
        assert req.specifier.contains(lock[name], prereleases=True), \
            f"constraints.txt pins {name}=={lock[name]}, outside pyproject.toml's {req}; run make lock"


def test_the_lock_pins_the_torch_the_makefile_installs():
    torch = next(line.split(":=")[1].strip() for line in (ROOT / "Makefile").read_text().splitlines()
                 if line.startswith("TORCH ") or line.startswith("TORCH\t"))
    assert Requirement(torch).specifier.contains(_versions(_pins(LOCK), _env(*LOCKED))["torch"])
