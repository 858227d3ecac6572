"""The layering the code promises, checked: agent -> {protos, core}; optimizers -> core (and the agent's
backends through one adapter, optimizers/on_device.py); controller -> everything; no import cycles.

The import graph is read with ast from every module of the project, imports inside functions included."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "protos", "agent", "optimizers", "controller")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if "_pb2" not in p.name}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its body (a package import counts as its __init__)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import module` imports that module; `from module import name` imports the module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring a package's own
    __init__ re-exporting its children (a lazy table names them as strings, not imports)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_module_is_in_an_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("package, forbidden", [
    ("core", ("protos", "agent", "optimizers", "controller")),
    ("protos", ("core", "agent", "optimizers", "controller")),
    ("agent", ("optimizers", "controller")),
    ("optimizers", ("controller",)),
])
def test_no_upward_import_anywhere_in_the_source(package, forbidden):
    graph = import_graph()
    upward = sorted(f"{mod} -> {dep}" for mod, deps in graph.items() if mod.split(".")[0] == package
                    for dep in deps if dep.split(".")[0] in forbidden)
    assert upward == []


def only_agent_backends(graph: dict[str, set[str]]) -> list[str]:
    """optimizers reach the agent only through optimizers/on_device.py."""
    return sorted(f"{mod} -> {dep}" for mod, deps in graph.items()
                  if mod.startswith("optimizers") and mod != "optimizers.on_device"
                  for dep in deps if dep.split(".")[0] == "agent")


def test_optimizers_reach_the_agent_through_one_adapter():
    assert only_agent_backends(import_graph()) == []


def loaded_after(statement: str) -> set[str]:
    code = (f"import sys; {statement}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_importing_the_agent_loads_no_controller_optimizers_onnx_or_torch():
    loaded = loaded_after("import agent.server, agent.servicer, agent.runner, agent.jobs")
    assert not loaded & {"controller", "optimizers", "onnx", "torch"}


def test_importing_optimizers_loads_no_controller():
    loaded = loaded_after("import optimizers, optimizers.quantization.quantizer, optimizers.profiler, optimizers.data.feeds, "
                          "optimizers.pytorch.pruning, optimizers.data.digits, optimizers.pytorch.helpers")
    assert "controller" not in loaded
