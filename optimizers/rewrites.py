"""Operator optimization: rewrite expensive or redundant ONNX ops into cheaper equivalents that edge
runtimes run well. Each rewrite is one small class in REWRITES; every one keeps the outputs equal
within float tolerance (tested), and the record counts what each changed."""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from optimizers.errors import ModelError, UnknownOption
from optimizers.graph import MS_DOMAIN, Graph, ensure_ms_opset
from optimizers.onnx_model import ModelLike, default_output, load_model, opset_version, upgrade_opset
from optimizers.record import OptimizationRecord, OptimizedModel, write_result

log = logging.getLogger(__name__)

FOLD_MAX_ELEMENTS = 4_000_000  # never fold a tensor bigger than this (e.g. a huge ConstantOfShape)
HARDSWISH_OPSET = 14   # HardSwish entered the standard ops in opset 14
NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                "Bernoulli", "If", "Loop", "Scan", "QuantizeLinear", "DequantizeLinear"}


class Rewrite(ABC):
    """One rewrite; apply() edits the graph in place and returns how many sites it changed."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def apply(self, graph: Graph) -> int:
        """Rewrite every match; return the count."""


class ConstantFolding(Rewrite):
    name = "constant_folding"
    description = "evaluate nodes whose inputs are all constants (incl. Shape of static shapes) once, offline"

    def apply(self, graph: Graph) -> int:
        import onnx
        from onnx import helper, shape_inference
        from onnx.reference import ReferenceEvaluator

        static_shapes = {}
        try:
            inferred = shape_inference.infer_shapes(graph.model)
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
                dims = vi.type.tensor_type.shape.dim
                if dims and all(d.HasField("dim_value") for d in dims):
                    static_shapes[vi.name] = [d.dim_value for d in dims]
        except Exception:  # shape inference is best effort here
            pass
        count = 0
        for node in list(graph.g.node):
            if node.op_type in NOT_FOLDABLE or node.domain not in ("", "ai.onnx") or \
                    any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
                continue
            if node.op_type == "Constant":
                value = graph.const(node.output[0])
                if value is None:
                    continue
                values = [value]
            elif node.op_type == "Shape" and node.input[0] in static_shapes:
                shape = np.asarray(static_shapes[node.input[0]], np.int64)
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                values = [shape[attrs.get("start", 0):attrs.get("end", len(shape))]]
            else:
                ins = [i for i in node.input if i]
                if not ins:
                    continue
                consts = [graph.const(i) for i in ins]
                if any(c is None for c in consts):
                    continue
                feeds = dict(zip(ins, consts))
                try:
                    sub = helper.make_model(
                        helper.make_graph([node], "fold", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
                                          [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                                           for o in node.output if o]),
                        opset_imports=list(graph.model.opset_import))
                    values = ReferenceEvaluator(sub).run(None, feeds)
                except Exception as exc:  # an op the reference evaluator cannot run: leave it
                    log.debug("not folding %s (%s): %s", node.name, node.op_type, exc)
                    continue
            if any(np.asarray(v).size > FOLD_MAX_ELEMENTS for v in values):
                continue
            for out, value in zip([o for o in node.output if o], values):
                value = np.asarray(value)
                if out in graph.graph_outputs:
                    break
                graph.g.initializer.append(graph._np.from_array(value, out))
                graph.inits[out] = graph.g.initializer[-1]
            else:
                graph.remove([node])
                del graph.producer[node.output[0]]
                if node.op_type != "Constant":
                    count += 1
        graph.prune()
        return count


class DivToMul(Rewrite):
    name = "div_to_mul"
    description = "x / c with a constant c becomes x * (1/c): multiplication is cheaper than division"

    def apply(self, graph: Graph) -> int:
        count = 0
        for node in list(graph.g.node):
            if node.op_type != "Div":
                continue
            c = graph.const(node.input[1])
            if c is None or not np.issubdtype(c.dtype, np.floating) or np.any(c == 0):
                continue
            node.op_type = "Mul"
            node.input[1] = graph.add_const(node.input[1] + "_reciprocal", (1.0 / c).astype(c.dtype))
            count += 1
        graph.prune()
        return count


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
            c = graph.scalar(scale.input[1])
            want = math.sqrt(2.0) if scale.op_type == "Div" else 1 / math.sqrt(2.0)
            if c is None or not math.isclose(c, want, rel_tol=1e-3):
                continue
            x = scale.input[0]
            add = graph.sole_user(erf.output[0])
            if add is None or add.op_type != "Add":
                continue
            one = add.input[1] if add.input[0] == erf.output[0] else add.input[0]
            if graph.scalar(one) is None or not math.isclose(graph.scalar(one), 1.0):
                continue
            # two orders: Mul(x, add) then Mul(., 0.5), or Mul(add, 0.5)... covered as chains of two Muls
            m1 = graph.sole_user(add.output[0])
            if m1 is None or m1.op_type != "Mul":
                continue
            other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
            m2 = graph.sole_user(m1.output[0])
            if other == x and m2 is not None and m2.op_type == "Mul":
                half = m2.input[1] if m2.input[0] == m1.output[0] else m2.input[0]
                if graph.scalar(half) is None or not math.isclose(graph.scalar(half), 0.5):
                    continue
                last, chain = m2, [scale, erf, add, m1, m2]
            elif graph.scalar(other) is not None and math.isclose(graph.scalar(other), 0.5) and \
                    m2 is not None and m2.op_type == "Mul" and x in m2.input:
                last, chain = m2, [scale, erf, add, m1, m2]
            else:
                half_x = graph.producer.get(other)  # Mul(x, 0.5) computed separately
                if half_x is None or half_x.op_type != "Mul" or x not in half_x.input:
                    continue
                h = half_x.input[1] if half_x.input[0] == x else half_x.input[0]
                if graph.scalar(h) is None or not math.isclose(graph.scalar(h), 0.5):
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
            other = mul.input[1] if mul.input[0] == sig.output[0] else mul.input[0]
            if other != x:
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
            c = graph.scalar(name)
            return c is not None and math.isclose(c, value, rel_tol=1e-4)

        def other(node, tensor: str) -> str:
            return node.input[1] if node.input[0] == tensor else node.input[0]

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
            x, chain, head = other(add, three[0]), [add, gate], gate
            scale = graph.sole_user(gate.output[0])   # the / 6 may come before the * x
            if scale is not None and len(scale.input) == 2 and (
                    (scale.op_type == "Div" and const_is(scale.input[1], 6.0))
                    or (scale.op_type == "Mul" and const_is(other(scale, gate.output[0]), 1 / 6))):
                chain, head = [*chain, scale], scale
        mul = graph.sole_user(head.output[0])
        if mul is None or mul.op_type != "Mul" or other(mul, head.output[0]) != x or len(set(mul.input)) != 2:
            return None
        chain.append(mul)
        if head is gate and gate.op_type == "Clip":   # x * clip(...) then / 6 or * 1/6
            scale = graph.sole_user(mul.output[0])
            if scale is None or len(scale.input) != 2 or not (
                    (scale.op_type == "Div" and const_is(scale.input[1], 6.0))
                    or (scale.op_type == "Mul" and const_is(other(scale, mul.output[0]), 1 / 6))):
                return None
            chain.append(scale)
        if any(o in graph.graph_outputs for n in chain[:-1] for o in n.output):
            return None
        return x, chain, chain[-1]


class TransposeChain(Rewrite):
    name = "transpose_chain"
    description = "Transpose followed by Transpose becomes one Transpose (or none when they cancel)"

    def apply(self, graph: Graph) -> int:
        from onnx import helper

        count = 0
        changed = True
        while changed:
            changed = False
            for first in [n for n in graph.g.node if n.op_type == "Transpose"]:
                second = graph.sole_user(first.output[0])
                if second is None or second.op_type != "Transpose":
                    continue
                p1 = next((list(helper.get_attribute_value(a)) for a in first.attribute if a.name == "perm"), None)
                p2 = next((list(helper.get_attribute_value(a)) for a in second.attribute if a.name == "perm"), None)
                if p1 is None or p2 is None:
                    continue
                composed = [p1[i] for i in p2]
                if composed == list(range(len(composed))):
                    graph.remove([first, second])
                    graph.refresh()
                    if second.output[0] in graph.graph_outputs:
                        graph.g.node.append(helper.make_node("Identity", [first.input[0]], [second.output[0]]))
                    else:
                        for n in graph.g.node:
                            for k, i in enumerate(n.input):
                                if i == second.output[0]:
                                    n.input[k] = first.input[0]
                else:
                    merged = helper.make_node("Transpose", [first.input[0]], [second.output[0]],
                                              name=first.name + "_merged", perm=composed)
                    graph.replace([first, second], merged, at=first)
                graph.refresh()
                count += 1
                changed = True
                break
        return count


class ReshapeChain(Rewrite):
    name = "reshape_chain"
    description = "Reshape followed by Reshape to a fixed shape becomes one Reshape; Identity nodes go"

    def apply(self, graph: Graph) -> int:
        count = 0
        for first in [n for n in graph.g.node if n.op_type == "Reshape"]:
            second = graph.sole_user(first.output[0])
            if second is None or second.op_type != "Reshape" or second.input[0] != first.output[0]:
                continue
            shape = graph.const(second.input[1])
            if shape is None or np.any(shape == 0):  # a 0 would copy a dim of the intermediate shape
                continue
            second.input[0] = first.input[0]
            graph.remove([first])
            graph.refresh()
            count += 1
        for ident in [n for n in graph.g.node if n.op_type == "Identity"]:
            if ident.output[0] in graph.graph_outputs or ident.input[0] in graph.graph_outputs:
                continue
            if ident.input[0] not in graph.producer and ident.input[0] not in graph.inits:
                continue  # a graph input: keep (renaming inputs changes the interface)
            for n in graph.consumers.get(ident.output[0], []):
                for k, i in enumerate(n.input):
                    if i == ident.output[0]:
                        n.input[k] = ident.input[0]
            graph.remove([ident])
            graph.refresh()
            count += 1
        graph.prune()
        return count


REWRITES: dict[str, type[Rewrite]] = {r.name: r for r in (ConstantFolding, GeluFusion, SwishFusion, HardSwishFusion,
                                                          DivToMul, TransposeChain, ReshapeChain)}
PORTABLE = ("constant_folding", "hardswish", "div_to_mul", "transpose_chain", "reshape_chain")  # standard ops


class OperatorOptimizer:
    """`OperatorOptimizer().optimize(model, rewrites=None)`: apply the named rewrites (default: all, in
    REWRITES order; GELU and Swish need ONNX Runtime's ops below opset 20) -> OptimizedModel."""

    def __init__(self, rewrites: list[str] | None = None) -> None:
        names = list(REWRITES) if rewrites is None else list(rewrites)
        for n in names:
            if n not in REWRITES:
                raise UnknownOption("rewrite", n, REWRITES)
        self.rewrites = names

    def optimize(self, model: ModelLike, output: str | Path | None = None) -> OptimizedModel:
        import onnx

        started = time.perf_counter()
        source = load_model(model)
        proto = onnx.ModelProto()
        proto.CopyFrom(source.proto)
        record = OptimizationRecord(technique="rewrite", settings={"rewrites": self.rewrites},
                                    source=str(source.path or "<ModelProto>"), source_digest=source.digest,
                                    source_size_bytes=source.size_bytes)
        graph = Graph(proto)
        nodes_before = len(proto.graph.node)
        for name in self.rewrites:
            n = REWRITES[name]().apply(graph)
            graph.refresh()
            if n:
                record.changes[name] = n
        if ensure_ms_opset(proto):
            record.notes.append("uses com.microsoft ops (Gelu/QuickGelu): runs on ONNX Runtime; pass "
                                f"rewrites={list(PORTABLE)} for other runtimes")
        record.metrics["nodes_before"] = nodes_before
        record.metrics["nodes_after"] = len(proto.graph.node)
        out = default_output(source, "rewritten", output)
        return write_result(proto, out, record, started)


def matching_rewrites(model: ModelLike, names: tuple[str, ...] | list[str] | None = None) -> dict[str, int]:
    """{rewrite: sites it would change} for the named rewrites (default: all) that match the model, each
    tried alone on a copy."""
    import onnx

    source = load_model(model)
    found = {}
    for name in names or list(REWRITES):
        if name not in REWRITES:
            raise UnknownOption("rewrite", name, REWRITES)
        proto = onnx.ModelProto()
        proto.CopyFrom(source.proto)
        try:
            n = REWRITES[name]().apply(Graph(proto))
        except ModelError as exc:   # e.g. an opset the converter cannot raise: the rewrite does not apply
            log.info("rewrite %s does not apply: %s", name, exc)
            continue
        if n:
            found[name] = n
    return found
