"""Rewrites of activation subgraphs as frameworks export them into one op: erf GELU, SiLU/Swish,
hard-swish. Each is an index.Rewrite in rewrites.REWRITES; each keeps the outputs equal within float
tolerance (tested on the real exports: YOLOv8n's SiLU, PP-OCRv4's hard-swish)."""

from __future__ import annotations

import math

from optimizers.graph.index import MS_DOMAIN, Graph, Rewrite, ensure_ms_opset
from optimizers.graph.model import opset_version, upgrade_opset

HARDSWISH_OPSET = 14   # HardSwish entered the standard ops in opset 14


class GeluFusion(Rewrite):
    name = "gelu"
    description = "the erf GELU subgraph x*0.5*(1+erf(x/sqrt2)) becomes one Gelu op"

    def apply(self, graph: Graph) -> int:
        from onnx import helper

        count = 0
        for erf in [n for n in graph.g.node if n.op_type == "Erf"]:
            scale = graph.producer.get(erf.input[0])
            if scale is None or scale.op_type not in ("Div", "Mul"):
                continue
            want = math.sqrt(2.0) if scale.op_type == "Div" else 1 / math.sqrt(2.0)
            if not graph.is_scalar(scale.input[1], want, rel_tol=1e-3):
                continue
            x = scale.input[0]
            add = graph.sole_user(erf.output[0])
            if add is None or add.op_type != "Add":
                continue
            if not graph.is_scalar(graph.other_input(add, erf.output[0]), 1.0):
                continue
            # two orders: Mul(x, add) then Mul(., 0.5), or Mul(add, 0.5)... covered as chains of two Muls
            m1 = graph.sole_user(add.output[0])
            if m1 is None or m1.op_type != "Mul":
                continue
            other = graph.other_input(m1, add.output[0])
            m2 = graph.sole_user(m1.output[0])
            if other == x and m2 is not None and m2.op_type == "Mul":
                if not graph.is_scalar(graph.other_input(m2, m1.output[0]), 0.5):
                    continue
                last, chain = m2, [scale, erf, add, m1, m2]
            elif graph.is_scalar(other, 0.5) and m2 is not None and m2.op_type == "Mul" and x in m2.input:
                last, chain = m2, [scale, erf, add, m1, m2]
            else:
                half_x = graph.producer.get(other)  # Mul(x, 0.5) computed separately
                if half_x is None or half_x.op_type != "Mul" or x not in half_x.input:
                    continue
                if not graph.is_scalar(graph.other_input(half_x, x), 0.5):
                    continue
                last, chain = m1, [scale, erf, add, m1]  # prune drops Mul(x, 0.5) if nothing else reads it
            if len(graph.consumers.get(scale.output[0], [])) != 1:
                continue
            standard = opset_version(graph.model) >= 20
            gelu = helper.make_node("Gelu", [x], [last.output[0]], name=erf.name + "_gelu",
                                    domain="" if standard else MS_DOMAIN)
            graph.replace(chain, gelu, at=last)
            count += 1
        graph.prune()
        return count


class SwishFusion(Rewrite):
    name = "swish"
    description = "x * sigmoid(x) (SiLU/Swish) becomes one op (QuickGelu with alpha=1 on ONNX Runtime)"

    def apply(self, graph: Graph) -> int:
        from onnx import helper

        count = 0
        for sig in [n for n in graph.g.node if n.op_type == "Sigmoid"]:
            mul = graph.sole_user(sig.output[0])
            if mul is None or mul.op_type != "Mul":
                continue
            x = sig.input[0]
            if graph.other_input(mul, sig.output[0]) != x:
                continue
            node = helper.make_node("QuickGelu", [x], [mul.output[0]], name=mul.name + "_swish",
                                    domain=MS_DOMAIN, alpha=1.0)
            graph.replace([sig, mul], node, at=mul)
            count += 1
        return count


class HardSwishFusion(Rewrite):
    name = "hardswish"
    description = ("hard-swish as exported from frameworks without the op, x * clip(x + 3, 0, 6) / 6 (also with "
                   "* 1/6, or the / 6 first) and x * HardSigmoid(x), becomes one HardSwish (opset 14; an older "
                   "model is converted)")

    def apply(self, graph: Graph) -> int:
        from onnx import helper

        sites = [m for m in (self._match(graph, n) for n in graph.g.node if n.op_type in ("Clip", "HardSigmoid"))
                 if m is not None]
        if sites and opset_version(graph.model) < HARDSWISH_OPSET:
            ensure_ms_opset(graph.model)   # QuickGelu/Gelu from the rewrites before: the converter must see them
            graph.model.CopyFrom(upgrade_opset(graph.model, HARDSWISH_OPSET))
            graph.g = graph.model.graph
            graph.refresh()
            sites = [m for m in (self._match(graph, n) for n in graph.g.node
                                 if n.op_type in ("Clip", "HardSigmoid")) if m is not None]
        for x, chain, last in sites:
            node = helper.make_node("HardSwish", [x], [last.output[0]], name=last.name + "_hardswish")
            graph.replace(chain, node, at=last)
        graph.prune()
        return len(sites)

    @staticmethod
    def _match(graph: Graph, gate):
        """(x, the nodes to replace, the last of them) when `gate` is the middle of a hard-swish."""
        def const_is(name: str, value: float) -> bool:
            return graph.is_scalar(name, value, rel_tol=1e-4)

        def divides_by_six(node, tensor: str) -> bool:
            """node is `tensor / 6` or `tensor * 1/6`."""
            return node is not None and len(node.input) == 2 and (
                (node.op_type == "Div" and const_is(node.input[1], 6.0))
                or (node.op_type == "Mul" and const_is(graph.other_input(node, tensor), 1 / 6)))

        if gate.op_type == "HardSigmoid":
            attrs = {a.name: a.f for a in gate.attribute}
            if not (math.isclose(attrs.get("alpha", 0.2), 1 / 6, rel_tol=1e-4)
                    and math.isclose(attrs.get("beta", 0.5), 0.5)):
                return None
            x, chain, head = gate.input[0], [gate], gate
        else:   # Clip(Add(x, 3), 0, 6), bounds as inputs (opset >= 11) or attributes
            attrs = {a.name: a.f for a in gate.attribute}
            lo = graph.scalar(gate.input[1]) if len(gate.input) > 1 and gate.input[1] else attrs.get("min")
            hi = graph.scalar(gate.input[2]) if len(gate.input) > 2 and gate.input[2] else attrs.get("max")
            add = graph.producer.get(gate.input[0])
            if lo != 0.0 or hi is None or not math.isclose(hi, 6.0) or add is None or add.op_type != "Add":
                return None
            three = [i for i in add.input if const_is(i, 3.0)]
            if len(three) != 1 or graph.sole_user(add.output[0]) is None:
                return None
            x, chain, head = graph.other_input(add, three[0]), [add, gate], gate
            scale = graph.sole_user(gate.output[0])   # the / 6 may come before the * x
            if divides_by_six(scale, gate.output[0]):
                chain, head = [*chain, scale], scale
        mul = graph.sole_user(head.output[0])
        if mul is None or mul.op_type != "Mul" or graph.other_input(mul, head.output[0]) != x \
                or len(set(mul.input)) != 2:
            return None
        chain.append(mul)
        if head is gate and gate.op_type == "Clip":   # x * clip(...) then / 6 or * 1/6
            scale = graph.sole_user(mul.output[0])
            if not divides_by_six(scale, mul.output[0]):
                return None
            chain.append(scale)
        if any(o in graph.graph_outputs for n in chain[:-1] for o in n.output):
            return None
        return x, chain, chain[-1]
