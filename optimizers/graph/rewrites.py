"""Operator optimization: rewrite expensive or redundant ONNX ops into cheaper equivalents that edge
runtimes run well. Each rewrite is one small class (an index.Rewrite; the activation ones in
activation_rewrites.py) in REWRITES; every one keeps the outputs equal
within float tolerance (tested), and the record counts what each changed."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from optimizers.errors import ModelError, UnknownOption
from optimizers.graph.activation_rewrites import GeluFusion, HardSwishFusion, SwishFusion
from optimizers.graph.index import Graph, Rewrite, ensure_ms_opset
from optimizers.graph.model import ModelLike, default_output, load_model
from optimizers.record import OptimizationRecord, OptimizedModel, write_result

log = logging.getLogger(__name__)

FOLD_MAX_ELEMENTS = 4_000_000  # never fold a tensor bigger than this (e.g. a huge ConstantOfShape)
NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                "Bernoulli", "If", "Loop", "Scan", "QuantizeLinear", "DequantizeLinear"}


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
        source.note_export(record)
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
