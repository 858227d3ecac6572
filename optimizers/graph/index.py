"""A small index over an ONNX graph (producers, consumers, constants) with in-place edits, shared by
the graph-level techniques (fusion, operator rewrites)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib ops (FusedConv, FusedGemm, Gelu, QuickGelu)


def ensure_ms_opset(model) -> bool:
    """Import the com.microsoft opset when a node uses it; True when the model now needs ONNX Runtime."""
    from onnx import helper

    uses = any(n.domain == MS_DOMAIN for n in model.graph.node)
    if uses and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return uses


class Graph:
    """Index of an ONNX graph: producers, consumers, constants; helpers to edit it in place."""

    def __init__(self, model) -> None:
        self.model = model
        self.g = model.graph
        self.refresh()

    def refresh(self) -> None:
        from onnx import numpy_helper

        self.inits = {i.name: i for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in self.g.output}
        self._np = numpy_helper

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return self._np.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return self._np.to_array(a.t)
        return None

    def scalar(self, name: str) -> float | None:
        c = self.const(name)
        return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None

    def is_scalar(self, name: str, value: float, rel_tol: float = 1e-9) -> bool:
        """Whether `name` is a constant scalar close to `value`."""
        c = self.scalar(name)
        return c is not None and math.isclose(c, value, rel_tol=rel_tol)

    @staticmethod
    def other_input(node, tensor: str) -> str:
        """The input of a two-input node that is not `tensor`."""
        return node.input[1] if node.input[0] == tensor else node.input[0]

    def sole_user(self, tensor: str):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.graph_outputs else None

    def add_const(self, base: str, value: np.ndarray) -> str:
        name, i = base, 1
        while name in self.inits or name in self.producer:
            name, i = f"{base}_{i}", i + 1
        self.g.initializer.append(self._np.from_array(value, name))
        self.inits[name] = self.g.initializer[-1]
        return name

    def replace(self, old_nodes, new_node, at) -> None:
        """Put new_node where `at` stands, drop old_nodes, and re-index."""
        self.g.node.insert(list(self.g.node).index(at), new_node)
        self.remove(old_nodes)
        self.refresh()

    def remove(self, nodes) -> None:
        """Remove nodes in place (other node objects stay valid, unlike a rebuild of the list)."""
        for n in nodes:
            self.g.node.remove(n)

    def prune(self, nodes: bool = True) -> None:
        """Drop initializers nobody reads and (with `nodes`) nodes whose outputs nobody uses."""
        while nodes:
            used = {i for n in self.g.node for i in n.input} | self.graph_outputs
            dead = [n for n in self.g.node if not any(o in used for o in n.output if o)]
            if not dead:
                break
            self.remove(dead)
        used = {i for n in self.g.node for i in n.input} | self.graph_outputs
        keep = [i for i in self.g.initializer if i.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        self.refresh()


class Rewrite(ABC):
    """One rewrite; apply() edits the graph in place and returns how many sites it changed."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def apply(self, graph: Graph) -> int:
        """Rewrite every match; return the count."""
