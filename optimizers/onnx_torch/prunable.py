"""Exact rewrites of a converted module's torch.fx graph that let Torch-Pruning's dependency graph prune it,
and the layers that must keep their output channels.

- `silu`: x * sigmoid(x) (how exporters write SiLU) becomes one nn.SiLU, an op Torch-Pruning passes through.
- `split-conv`: a Conv whose output (through element-wise activations) is split along the channels becomes
  one Conv per part, each with its own activation (YOLOv8's C2f blocks; Torch-Pruning cannot follow a
  channel Split: Torch-Pruning#147). Same outputs, bit for bit up to float summation order.
- `head_layers`: the Conv/Linear layers with a path to a model output that passes through no other such
  layer (the detection heads' box and class convs, a box-decoding DFL conv, a classifier's last layer):
  their output channels are what the model's users read, so they are kept whole.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

LAYERS = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear")
ACTIVATIONS = ("SiLU", "ReLU", "ReLU6", "Sigmoid", "Hardswish", "Hardsigmoid", "LeakyReLU", "GELU", "Tanh",
               "OnnxHardSigmoid", "OnnxClip")


def _module(gm, node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _kind(gm, node) -> str:
    module = _module(gm, node)
    return type(module).__name__ if module is not None else ""


def _binary(gm, node, op: str) -> bool:
    """A call to onnx2torch's binary op module computing `op` (Mul, Add, ...)."""
    module = _module(gm, node)
    return (type(module).__name__ == "OnnxBinaryMathOperation"
            and getattr(module.math_op_function, "__name__", "") == op)


class GraphRewrite(ABC):
    """One exact rewrite of a torch.fx GraphModule; `apply` returns how many sites it changed."""

    name: str

    @abstractmethod
    def apply(self, gm) -> int:
        ...


class SiLURewrite(GraphRewrite):
    name = "silu"

    def apply(self, gm) -> int:
        import torch

        count = 0
        for node in list(gm.graph.nodes):
            if not _binary(gm, node, "mul") or len(node.args) != 2:
                continue
            a, b = node.args
            for x, s in ((a, b), (b, a)):
                if (getattr(s, "op", "") == "call_module" and _kind(gm, s) == "Sigmoid" and s.args[0] is x
                        and len(s.users) == 1):
                    target = f"{node.target}_silu"
                    gm.add_submodule(target, torch.nn.SiLU())
                    with gm.graph.inserting_after(node):
                        silu = gm.graph.call_module(target, (x,))
                    node.replace_all_uses_with(silu)
                    gm.graph.erase_node(node)
                    gm.graph.erase_node(s)
                    count += 1
                    break
        return count


class SplitConvRewrite(GraphRewrite):
    name = "split-conv"

    def apply(self, gm) -> int:
        count = 0
        for node in list(gm.graph.nodes):
            sizes = _channel_split(gm, node)
            if sizes is None:
                continue
            chain = _conv_chain(gm, node.args[0])
            if chain is None:
                continue
            _split_conv(gm, node, chain, sizes)
            count += 1
        return count


class BatchReshapeRewrite(GraphRewrite):
    """A Reshape to a constant shape [1, d1, ...] (the batch dimension as the converter fixed it) reshapes to
    [-1, d1, ...]: the same at batch 1, and a module that trains on batches."""

    name = "batch-reshape"

    def apply(self, gm) -> int:
        import torch

        count = 0
        for node in gm.graph.nodes:
            if _kind(gm, node) != "OnnxReshape" or len(node.args) < 2 or getattr(node.args[1], "op", "") != "get_attr":
                continue
            owner, _, leaf = node.args[1].target.rpartition(".")
            holder = _attr(gm, owner) if owner else gm
            shape = getattr(holder, leaf)
            if shape.dim() == 1 and len(shape) > 1 and int(shape[0]) == 1 and not bool((shape == -1).any()):
                fixed = shape.clone()
                fixed[0] = -1
                if isinstance(holder, torch.nn.Module) and leaf in holder._buffers:
                    holder._buffers[leaf] = fixed
                else:
                    setattr(holder, leaf, fixed)
                count += 1
        return count


REWRITES: dict[str, GraphRewrite] = {r.name: r for r in (SiLURewrite(), SplitConvRewrite(), BatchReshapeRewrite())}


def _channel_split(gm, node) -> list[int] | None:
    """The part sizes of a Split along dim 1 whose every user takes one part by index; else None."""
    kind = _kind(gm, node)
    if kind not in ("OnnxSplit13", "OnnxSplit"):
        return None
    module = _module(gm, node)
    if module.axis != 1 or not all(u.op == "call_function" and u.target.__name__ == "getitem" for u in node.users):
        return None
    if kind == "OnnxSplit":
        sizes = module.split
    elif len(node.args) > 1 and node.args[1] is not None and node.args[1].op == "get_attr":
        sizes = [int(v) for v in _attr(gm, node.args[1].target).tolist()]
    else:
        sizes = None
    return list(sizes) if sizes else None


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _conv_chain(gm, node) -> list | None:
    """[conv, act, act, ...] ending at `node`: a Conv2d (groups 1) then element-wise activations, each used
    only by the next; None otherwise."""
    chain = [node]
    while _kind(gm, chain[0]) in ACTIVATIONS:
        prev = chain[0].args[0]
        if len(prev.users) != 1:
            return None
        chain.insert(0, prev)
    conv = _module(gm, chain[0])
    if type(conv).__name__ != "Conv2d" or conv.groups != 1 or len(chain[0].users) != 1:
        return None
    return chain


def _split_conv(gm, split, chain, sizes: list[int]) -> None:
    import torch

    conv = _module(gm, chain[0])
    start = 0
    parts = []
    for i, size in enumerate(sizes):
        part = torch.nn.Conv2d(conv.in_channels, size, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                               1, conv.bias is not None, conv.padding_mode)
        with torch.no_grad():
            part.weight.copy_(conv.weight[start:start + size])
            if conv.bias is not None:
                part.bias.copy_(conv.bias[start:start + size])
        start += size
        target = f"{chain[0].target}_part{i}"
        gm.add_submodule(target, part)
        with gm.graph.inserting_before(split):
            x = gm.graph.call_module(target, chain[0].args)
            for act in chain[1:]:
                x = gm.graph.call_module(act.target, (x,))
        parts.append(x)
    for user in list(split.users):
        user.replace_all_uses_with(parts[user.args[1]])
        gm.graph.erase_node(user)
    gm.graph.erase_node(split)
    for node in reversed(chain):
        gm.graph.erase_node(node)


@dataclass
class Prepared:
    """What make_prunable changed, and the layers to keep whole."""

    sites: dict[str, int]           # rewrite name -> sites changed
    heads: dict[str, str]           # module name -> why it is kept whole


def make_prunable(gm) -> Prepared:
    """Apply every rewrite in place (in REWRITES' order: SiLU first, so activation chains are one op) and name
    the head layers."""
    sites = {}
    for name, rewrite in REWRITES.items():
        sites[name] = rewrite.apply(gm)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return Prepared(sites, {n: "an output layer (a detection head or its box decoding): its output channels are "
                               "what the model's users read" for n in head_layers(gm)})


def head_layers(gm) -> list[str]:
    """Conv/Linear modules from which a model output is reached without passing another Conv/Linear."""
    out = [n for n in gm.graph.nodes if n.op == "output"]
    seen, found, stack = set(), [], list(out)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node is not out[0] and _kind(gm, node) in LAYERS:
            found.append(node.target)
            continue
        stack.extend(n for n in node.all_input_nodes)
    return sorted(set(found))
