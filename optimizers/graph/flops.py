"""FLOPs per layer from the ONNX graph (with shape inference), and for runtime-fused profile rows. An op
outside the tables below (Attention, LSTM, GRU, Einsum, Resize, ...), or one whose shapes are unknown, has
unknown FLOPs (None, printed "n/a"), never 0; a model's total is then a lower bound (format_total)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from optimizers.graph.layer_names import RUNTIME_SUFFIX

# Ops whose cost is about one floating-point operation per output element.
ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "Tanh", "Sqrt", "Pow", "Exp", "Log", "Erf",
    "LeakyRelu", "HardSigmoid", "HardSwish", "Gelu", "Neg", "Abs", "Min", "Max", "PRelu", "Elu",
    "Selu", "Softplus", "Reciprocal", "Where", "Cast", "QuantizeLinear", "DequantizeLinear",
    "BatchNormalization", "InstanceNormalization", "Mish", "Swish", "QuickGelu", "BiasGelu", "FastGelu",
}
MATMUL = {"MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "FusedGemm", "QGemm",
          "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulNBits"}
CONV = {"Conv", "FusedConv", "NchwcConv", "NhwcConv", "NhwcFusedConv", "QLinearConv", "ConvInteger",
        "ConvTranspose"}
REDUCE = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
          "ReduceL2", "NchwcGlobalAveragePool"}
# Ops that move or reshape data, or compute shapes: no floating-point work.
NO_FLOPS = {
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Squeeze",
    "Unsqueeze", "Flatten", "Shape", "Size", "Identity", "Constant", "ConstantOfShape", "Expand", "Tile",
    "Pad", "Range", "Dropout", "DepthToSpace", "SpaceToDepth", "ReorderInput", "ReorderOutput",
    "MemcpyToHost", "MemcpyFromHost", "ScatterND", "ScatterElements", "NonZero", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
}
_SHAPE = re.compile(r"\[([0-9,\-]*)\]")


def _prod(dims) -> int:
    return math.prod(int(d) for d in dims) if dims else 1


def node_flops(op_type: str, inputs: list[list[int] | None], outputs: list[list[int] | None],
               attrs: dict | None = None) -> int | None:
    """FLOPs (a multiply-add counts 2) of one node from its input and output shapes; None when unknown: an
    op outside the tables, or shapes shape inference could not give."""
    if op_type in NO_FLOPS:
        return 0
    attrs = attrs or {}
    out = outputs[0] if outputs and outputs[0] is not None else None
    needs = [out]                                  # the shapes each formula below reads
    if op_type in MATMUL or op_type in REDUCE or op_type == "ConvTranspose":
        needs.append(inputs[0] if inputs else None)
    if op_type in CONV:
        needs.append(inputs[1] if len(inputs) > 1 else None)
    if any(shape is None for shape in needs):
        return None
    try:
        if op_type in CONV:
            w = inputs[1]
            if op_type == "ConvTranspose":
                return 2 * _prod(inputs[0]) * _prod(w[1:])
            return 2 * _prod(out) * _prod(w[1:])
        if op_type in MATMUL:
            a = inputs[0]
            rows = _prod(out[:-1]) if out else 0
            k = _prod(a) // max(1, _prod(a[:-2]) * (a[-2] if not attrs.get("transA") else a[-1])) \
                if len(a) >= 2 else a[0]
            return 2 * rows * out[-1] * k if out else 0
        if op_type in ("MaxPool", "AveragePool", "NchwcMaxPool", "NchwcAveragePool"):
            kernel = attrs.get("kernel_shape")
            return _prod(out) * (_prod(kernel) if kernel else 1)
        if op_type in REDUCE:
            return _prod(inputs[0])
        if op_type in ("Softmax", "LogSoftmax"):
            return 3 * _prod(out)
        if op_type in ("LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization"):
            return 5 * _prod(out)
        if op_type in ELEMENTWISE:
            return _prod(out)
    except (TypeError, IndexError, ValueError):
        return None
    return None


def parse_shape_strings(shapes: list[str]) -> list[list[int] | None]:
    """'float[1,3,224,224]' -> [1, 3, 224, 224] (as written by the agent's profile rows)."""
    parsed = []
    for s in shapes:
        m = _SHAPE.search(s)
        parsed.append([int(x) for x in m.group(1).split(",") if x] if m else None)
    return parsed


@dataclass
class GraphNode:
    """One node of the ONNX graph with its FLOPs."""

    name: str
    op_type: str
    flops: int | None    # None: unknown
    inputs: list[str]


@dataclass
class GraphFlops:
    """Per-node FLOPs of a model, and which node produces each tensor."""

    nodes: dict[str, GraphNode]
    producers: dict[str, str]

    @property
    def total(self) -> int:
        """FLOPs of one inference over the nodes whose FLOPs are known (a lower bound when `unknown`)."""
        return sum(n.flops for n in self.nodes.values() if n.flops is not None)

    @property
    def unknown(self) -> list[str]:
        """Nodes whose FLOPs are unknown (ops outside the tables, or without inferred shapes)."""
        return [n.name for n in self.nodes.values() if n.flops is None]


def format_flops(flops: int | None, scale: float = 1e6, digits: int = 2) -> str:
    """FLOPs in units of `scale` (MFLOPs by default), or "n/a" when unknown."""
    return "n/a" if flops is None else f"{flops / scale:.{digits}f}"


def format_total(flops: int, unknown: int, scale: float = 1e9, unit: str = "GFLOPs", digits: int = 3) -> str:
    """A model's FLOPs: "0.615 GFLOPs", "≥ 0.615 GFLOPs (3 ops unknown)", or "n/a GFLOPs (N ops unknown)"
    when nothing was known."""
    if not unknown:
        return f"{flops / scale:.{digits}f} {unit}"
    ops = f"{unknown} op{'s' if unknown != 1 else ''} unknown"
    return f"n/a {unit} ({ops})" if not flops else f"≥ {flops / scale:.{digits}f} {unit} ({ops})"


def graph_flops(model, input_shapes: dict[str, list[int]]) -> GraphFlops:
    """FLOPs of every node of a model (a path or an onnx.ModelProto, left unchanged) after fixing its
    input dims and running shape inference."""
    import onnx
    from onnx import helper, shape_inference

    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    else:
        model = onnx.load(str(model), load_external_data=False)
    for inp in model.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shapes[inp.name]):
                d.ClearField("dim_param")
                d.dim_value = v
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # an unknown op stops inference; what cannot be inferred has unknown FLOPs
        pass
    shapes: dict[str, list[int] | None] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value for d in dims] if all(d.HasField("dim_value") for d in dims) else None
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    nodes, producers = {}, {}
    for i, node in enumerate(model.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        f = node_flops(node.op_type, [shapes.get(x) for x in node.input], [shapes.get(x) for x in node.output],
                       attrs)
        name = node.name or f"{node.op_type}_{i}"
        nodes[name] = GraphNode(name, node.op_type, f, list(node.input))
        producers.update({out: name for out in node.output})
    return GraphFlops(nodes, producers)


MAX_FUSED = 4


# ONNX Runtime's kernel for a graph op in another layout or with an activation fused in: on aarch64 a Conv
# followed by Relu runs as NhwcFusedConv named after the Conv ('conv_token_1'), on x86 as the NCHWc Conv
# named after the Relu ('r_nchwc')
KERNEL_PREFIX = re.compile(r"^(Nhwc|Nchwc)?(Fused)?(?=[A-Z])")
FUSED_ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish"}


def source_nodes(row: dict, graph: GraphFlops) -> list[str]:
    """The graph nodes a profile row ran: itself, or the chain ONNX Runtime fused into it. ORT names a
    fused node after its last output (e.g. 'Clip_11.out_nchwc' for Conv_9+BatchNormalization_10+Clip_11),
    or, for a Fused* kernel, after the op with the activation that follows it fused in."""
    kernel = row["op_type"]
    wanted = {kernel, KERNEL_PREFIX.sub("", kernel)}
    node = graph.nodes.get(row["name"])
    chain = [node.name] if node and node.op_type in wanted else _chain_back(row["name"], wanted, graph)
    if len(chain) == 1 and "Fused" in kernel:
        chain += _fused_activation(chain[0], graph)
    return chain


def _chain_back(row_name: str, wanted: set[str], graph: GraphFlops) -> list[str]:
    tensor = RUNTIME_SUFFIX.sub("", row_name)
    chain = []
    name = graph.producers.get(tensor) or (tensor if tensor in graph.nodes else None)
    while name and len(chain) < MAX_FUSED:
        chain.append(name)
        node = graph.nodes[name]
        if node.op_type in wanted:
            return chain[::-1]
        name = graph.producers.get(node.inputs[0]) if node.inputs else None
    return []


def _fused_activation(name: str, graph: GraphFlops) -> list[str]:
    """The activation node that alone consumes this node's output, which a Fused* kernel ran too."""
    outputs = {t for t, producer in graph.producers.items() if producer == name}
    consumers = [n for n in graph.nodes.values() if outputs & set(n.inputs)]
    if len(consumers) == 1 and consumers[0].op_type in FUSED_ACTIVATIONS:
        return [consumers[0].name]
    return []


def row_flops(row: dict, graph: GraphFlops) -> tuple[int | None, list[str]]:
    """FLOPs of a profile row and the graph nodes behind it: summed from the graph when the row maps to
    graph nodes (None if any of them is unknown), else computed from the shapes the runtime reported."""
    sources = source_nodes(row, graph)
    if sources:
        parts = [graph.nodes[n].flops for n in sources]
        return (None if None in parts else sum(parts)), sources
    return node_flops(row["op_type"], parse_shape_strings(row.get("input_shapes", [])),
                      parse_shape_strings(row.get("output_shapes", []))), []
