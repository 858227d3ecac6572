"""Layer fusion: fold BatchNorm into the Conv before it and fuse activations into Conv/Linear, on ONNX
models (FusedConv/FusedGemm, which ONNX Runtime's CPU provider runs) and on PyTorch modules
(torch.ao's fuse_modules)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimizers.errors import OptimizerError, UnknownOption
from optimizers.graph.index import MS_DOMAIN, Graph, ensure_ms_opset
from optimizers.graph.model import ModelLike, default_output, load_model, require_float_weights
from optimizers.record import OptimizationRecord, OptimizedModel, Skipped, write_result

log = logging.getLogger(__name__)

DEFAULT_PATTERNS = [["Conv2D", "BatchNorm", "ReLU"], ["Linear", "ReLU"], ["Conv2D", "ReLU6"]]
ANCHORS = {"Conv2D": "conv", "Conv": "conv", "Linear": "linear", "Gemm": "linear"}
NORMS = {"BatchNorm": "bn", "BatchNorm2d": "bn", "BatchNormalization": "bn"}
# pattern name -> ONNX activation as (op_type, FusedConv/FusedGemm activation name)
ACTIVATIONS = {"ReLU": ("Relu", "Relu"), "ReLU6": ("Clip", "Clip"), "Clip": ("Clip", "Clip"),
               "Sigmoid": ("Sigmoid", "Sigmoid"), "Tanh": ("Tanh", "Tanh"), "LeakyReLU": ("LeakyRelu", "LeakyRelu"),
               "HardSigmoid": ("HardSigmoid", "HardSigmoid")}
TARGETS = ("onnxruntime", "portable")  # portable: standard ops only (BatchNorm folding, no Fused* ops)


@dataclass
class FusedModule:
    """A fused PyTorch module and the record of what was fused."""

    module: Any
    record: OptimizationRecord


def _check_patterns(patterns) -> list[list[str]]:
    if not patterns:
        raise OptimizerError("patterns is empty; give chains such as [['Conv2D', 'BatchNorm', 'ReLU']]")
    known = list(ANCHORS) + list(NORMS) + list(ACTIVATIONS)
    out = []
    for chain in patterns:
        chain = [chain] if isinstance(chain, str) else list(chain)
        for name in chain:
            if name not in known:
                raise UnknownOption("fusion pattern element", name, known)
        if chain[0] not in ANCHORS:
            raise OptimizerError(f"pattern {chain} must start with a Conv2D or Linear layer, not {chain[0]}")
        if len(chain) < 2:
            raise OptimizerError(f"pattern {chain} has nothing to fuse into {chain[0]}")
        out.append(chain)
    return out


class OperatorFuser:
    """`OperatorFuser().fuse_operations(model=..., patterns=[["Conv2D","BatchNorm","ReLU"], ...])`: an ONNX
    path/ModelProto gives an OptimizedModel file; a torch.nn.Module gives a FusedModule."""

    def __init__(self, target: str = "onnxruntime") -> None:
        if target not in TARGETS:
            raise UnknownOption("fusion target", target, TARGETS)
        self.target = target

    def fuse_operations(self, model, patterns: list[list[str]] | None = None,
                        output: str | Path | None = None):
        chains = _check_patterns(DEFAULT_PATTERNS if patterns is None else patterns)
        if _is_torch_module(model):
            return self._fuse_torch(model, chains)
        return self._fuse_onnx(model, chains, output)

    # --- ONNX ---------------------------------------------------------------------------------
    def _fuse_onnx(self, model: ModelLike, chains: list[list[str]], output) -> OptimizedModel:
        import onnx

        started = time.perf_counter()
        source = load_model(model)
        require_float_weights(source.proto, "fusion")
        proto = onnx.ModelProto()
        proto.CopyFrom(source.proto)
        record = OptimizationRecord(technique="fuse", settings={"patterns": chains, "target": self.target},
                                    source=str(source.path or "<ModelProto>"), source_digest=source.digest,
                                    source_size_bytes=source.size_bytes)
        graph = Graph(proto)
        for chain in chains:
            kind = ANCHORS[chain[0]]
            for anchor in [n for n in list(proto.graph.node) if _matches_anchor(n, kind)]:
                node = anchor
                for element in chain[1:]:
                    nxt = graph.sole_user(node.output[0])
                    if nxt is None:
                        break
                    if element in NORMS:
                        if node.op_type != "Conv":
                            break
                        if nxt.op_type != "BatchNormalization":
                            continue  # no BatchNorm here (or folded by an earlier pattern): go on
                        if fold_batchnorm(graph, node, nxt):
                            record.changes["BatchNormalization folded into Conv"] = \
                                record.changes.get("BatchNormalization folded into Conv", 0) + 1
                        else:
                            record.skipped.append(Skipped(nxt.name, nxt.op_type, "its statistics are not constants"))
                            break
                    else:
                        op, act = ACTIVATIONS[element]
                        if nxt.op_type != op or (element == "ReLU6" and not is_relu6(graph, nxt)):
                            break
                        if self.target != "onnxruntime":
                            record.skipped.append(Skipped(nxt.name, nxt.op_type, "portable target: activation "
                                                                                 "fusion is left to the runtime"))
                            break
                        fused = fuse_activation(graph, node, nxt, act)
                        if fused is None:
                            record.skipped.append(Skipped(nxt.name, nxt.op_type, "its parameters are not constants"))
                            break
                        key = f"{nxt.op_type} fused into {fused.op_type}"
                        record.changes[key] = record.changes.get(key, 0) + 1
                        node = fused
                        break  # an activation ends the chain
        graph.prune(nodes=False)
        if ensure_ms_opset(proto):
            record.notes.append("uses com.microsoft FusedConv/FusedGemm: runs on ONNX Runtime; use "
                                "target='portable' for other runtimes")
        if not record.changes:
            record.notes.append("nothing matched the patterns; the model is unchanged")
        out = default_output(source, "fused", output)
        return write_result(proto, out, record, started)

    # --- PyTorch --------------------------------------------------------------------------------
    def _fuse_torch(self, module, chains: list[list[str]]) -> FusedModule:
        import torch
        from torch.ao.quantization import fuse_modules

        started = time.perf_counter()
        digest = _module_digest(module)
        record = OptimizationRecord(technique="fuse", settings={"patterns": chains, "framework": "pytorch"},
                                    source=type(module).__name__, source_digest=digest,
                                    source_size_bytes=sum(p.numel() * p.element_size() for p in module.parameters()))
        types = {"conv": (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d), "linear": (torch.nn.Linear,),
                 "bn": (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)}
        torch_acts = {"ReLU": torch.nn.ReLU, "ReLU6": torch.nn.ReLU6, "Sigmoid": torch.nn.Sigmoid,
                      "Tanh": torch.nn.Tanh, "LeakyReLU": torch.nn.LeakyReLU, "HardSigmoid": torch.nn.Hardsigmoid,
                      "Clip": torch.nn.Hardtanh}
        fusable_act = {"ReLU"}  # torch.ao fuses Conv/Linear(+BN)+ReLU only
        groups: list[list[str]] = []
        used: set[str] = set()
        for parent_name, parent in module.named_modules():
            children = list(parent.named_children())
            for i, (name, child) in enumerate(children):
                for chain in chains:
                    anchor = ANCHORS[chain[0]]
                    if not isinstance(child, types[anchor]):
                        continue
                    group = [name]
                    for j, element in enumerate(chain[1:], start=1):
                        if i + j >= len(children):
                            break
                        nname, nmod = children[i + j]
                        if element in NORMS and isinstance(nmod, types["bn"]) and anchor == "conv":
                            group.append(nname)
                        elif element in fusable_act and isinstance(nmod, torch_acts[element]):
                            group.append(nname)
                            break
                        else:
                            break
                    full = [_join(parent_name, g) for g in group]
                    if len(group) > 1 and not used.intersection(full):
                        groups.append(full)
                        used.update(full)
                        after = children[i + len(group)][1] if i + len(group) < len(children) else None
                        unfusable = tuple(t for k, t in torch_acts.items() if k not in fusable_act)
                        ends_in_relu = isinstance(children[i + len(group) - 1][1], torch.nn.ReLU)
                        if not ends_in_relu and isinstance(after, unfusable):
                            record.skipped.append(Skipped(_join(parent_name, children[i + len(group)][0]),
                                                          type(after).__name__,
                                                          "torch.ao fuses ReLU only; kept as a separate module"))
                        break
        was_training = module.training
        fused = fuse_modules(module.eval(), groups, inplace=False) if groups else module.eval()
        module.train(was_training)
        for g in groups:
            key = "+".join(type(module.get_submodule(n)).__name__ for n in g) + " fused"
            record.changes[key] = record.changes.get(key, 0) + 1
        record.settings["groups"] = groups
        record.notes.append("fusion assumes inference: the fused module is in eval mode (BatchNorm folded)")
        record.output_digest = _module_digest(fused)
        record.elapsed_s = round(time.perf_counter() - started, 3)
        return FusedModule(fused, record)


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def _is_torch_module(obj) -> bool:
    mod = type(obj).__module__
    if not mod.startswith("torch") and "torch" not in {c.__module__.split(".")[0] for c in type(obj).__mro__}:
        return False
    import torch

    return isinstance(obj, torch.nn.Module)


def _module_digest(module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _matches_anchor(node, kind: str) -> bool:
    return (kind == "conv" and node.op_type == "Conv") or (kind == "linear" and node.op_type == "Gemm")


def fold_batchnorm(graph: Graph, conv, bn) -> bool:
    """W' = W * g/sqrt(v+eps) per output channel; b' = (b - m) * g/sqrt(v+eps) + beta."""
    from onnx import helper

    w = graph.const(conv.input[1])
    params = [graph.const(x) for x in bn.input[1:5]]
    if w is None or any(p is None for p in params) or len(bn.output) > 1 and any(bn.output[1:]):
        return False
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    eps = next((helper.get_attribute_value(a) for a in bn.attribute if a.name == "epsilon"), 1e-5)
    factor = gamma / np.sqrt(var + eps)
    bias = graph.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
    if bias is None:
        return False
    new_w = (w.astype(np.float64) * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
    new_b = ((bias.astype(np.float64) - mean) * factor + beta).astype(w.dtype)
    wname = graph.add_const(conv.input[1] + "_bnfolded", new_w)
    bname = graph.add_const(conv.name + "_bias_bnfolded", new_b)
    x = conv.input[0]
    del conv.input[:]
    conv.input.extend([x, wname, bname])
    conv.output[0] = bn.output[0]  # the conv now produces what the BatchNorm did
    graph.remove([bn])
    graph.refresh()
    return True


def fuse_activation(graph: Graph, anchor, act, activation: str):
    """Replace anchor+act by com.microsoft FusedConv/FusedGemm carrying the activation."""
    from onnx import helper

    params: list[float] = []
    if act.op_type == "Clip":
        lo, hi = clip_bounds(graph, act)
        if lo is None:
            return None
        params = [lo, hi]
    elif act.op_type in ("LeakyRelu",):
        params = [next((helper.get_attribute_value(a) for a in act.attribute if a.name == "alpha"), 0.01)]
    elif act.op_type == "HardSigmoid":
        attrs = {a.name: helper.get_attribute_value(a) for a in act.attribute}
        params = [attrs.get("alpha", 0.2), attrs.get("beta", 0.5)]
    op = "FusedConv" if anchor.op_type == "Conv" else "FusedGemm"
    attrs = {a.name: helper.get_attribute_value(a) for a in anchor.attribute}
    extra = {"activation": activation}
    if params:
        extra["activation_params" if op == "FusedConv" else "activation_alpha"] = \
            params if op == "FusedConv" else params[0]
        if op == "FusedGemm" and len(params) > 1:
            extra["activation_beta"] = params[1]
    fused = helper.make_node(op, list(anchor.input), [act.output[0]], name=anchor.name + "_fused",
                             domain=MS_DOMAIN, **attrs, **extra)
    graph.replace([anchor, act], fused, at=anchor)
    return fused


def clip_bounds(graph: Graph, clip) -> tuple[float | None, float | None]:
    """(min, max) of a Clip from its attributes (opset < 11) or constant inputs; (None, None) otherwise."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in clip.attribute}
    if "min" in attrs or "max" in attrs:  # opset < 11
        return float(attrs.get("min", -3.4e38)), float(attrs.get("max", 3.4e38))
    vals = []
    for i in (1, 2):
        if len(clip.input) > i and clip.input[i]:
            c = graph.const(clip.input[i])
            if c is None:
                return None, None
            vals.append(float(c))
        else:
            vals.append(-3.4e38 if i == 1 else 3.4e38)
    return vals[0], vals[1]


def is_relu6(graph: Graph, clip) -> bool:
    lo, hi = clip_bounds(graph, clip)
    return lo == 0.0 and hi == 6.0
