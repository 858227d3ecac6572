"""What static INT8 keeps in float although its op type is quantized, found in the graph itself (not by
leaving whole op types in float): attention masks, residual Adds before a float normalization, and float
islands (quantizable ops with no compute op among them, walled in by float ops)."""

from __future__ import annotations

from optimizers.graph.index import Graph

FLOAT_OP_TYPES = ("LayerNormalization",)
MASK_VALUE = -1e4   # a constant at or below this, added to scores, is an attention mask
# the ops whose INT8 kernels save time; a group of quantized ops without one only adds Q/DQ pairs
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
DECODING_STOPS = (*COMPUTE_OPS, *FLOAT_OP_TYPES, "BatchNormalization", "InstanceNormalization")


def protected_nodes(model, op_types: list[str] | None = None, excluded=()) -> dict[str, list[str]]:
    """Nodes static INT8 keeps float, by what they are:
    - the attention masks (attention_mask_nodes) and their Softmax;
    - the residual Adds that feed a float normalization (FLOAT_OP_TYPES): the residual stream carries a
      transformer's outlier channels (MiniLM with its residual Adds in INT8: cosine 0.82 instead of 0.93);
    - with `op_types` (the op types to quantize), the float islands (float_islands), counting the nodes
      `excluded` by the user as float walls too.
    - the output decoding (output_decoding): what a detector does after its last convolutions.
    A plain classifier has none of them."""
    consumers = Graph(model).consumers
    floats = _float_tensors(model)   # (shape inference, once for both walks below)
    residual = [n.name for n in model.graph.node if n.op_type == "Add" and n.name and
                any(c.op_type in FLOAT_OP_TYPES for o in n.output for c in consumers.get(o, []))]
    found = {"attention-mask Add/Softmax": attention_mask_nodes(model),
             "residual Adds before LayerNormalization": residual,
             "output decoding (after the last compute op before an output)": output_decoding(model, floats)}
    if op_types is not None:
        found["float islands (quantized ops with no compute op, between float ops)"] = float_islands(
            model, set(op_types), {n for names in found.values() for n in names} | set(excluded), floats)
    return found


def output_decoding(model, floats: set[str] | None = None) -> list[str]:
    """Names of the nodes from which a model output is reached without passing a compute op (COMPUTE_OPS),
    a normalization or an embedding lookup (a transformer's residual stream runs from its output back to its
    embeddings through Adds and LayerNorms alone; that is not decoding):
    a detector's box decoding and the Concat that joins boxes in pixels (0..640) with class scores
    (0..1). In INT8 that Concat shares one 8-bit scale, which rounds every class score to 0 or one step:
    YOLOv8n's detections agreed with its float ones at mAP@0.5 0.02-0.08 with it quantized, 0.67 without.
    The Convs and MatMuls, where INT8 saves time, all lie before it."""
    producer = {o: n for n in model.graph.node for o in n.output}
    floats = _float_tensors(model) if floats is None else floats
    inits = {i.name for i in model.graph.initializer}
    found: dict[str, None] = {}
    stack = [o.name for o in model.graph.output]
    seen: set[int] = set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or id(node) in seen or node.op_type in DECODING_STOPS or (
                node.op_type == "Gather" and node.input and node.input[0] in inits):
            continue
        seen.add(id(node))
        if node.name and any(o in floats for o in node.output):   # (not the shape arithmetic beside it)
            found[node.name] = None
        stack.extend(node.input)
    return list(found)


def float_islands(model, op_types: set[str], kept: set[str] = frozenset(), floats: set[str] | None = None) -> list[str]:
    """Names of the nodes of each connected group of to-be-quantized nodes (joined through the tensors
    they pass each other) that holds no compute op (COMPUTE_OPS, or a Gather of a constant table): such a
    group's neighbours all stay float, so quantizing it adds a DequantizeLinear/QuantizeLinear at every
    edge, saves no time, and costs precision. Silero VAD's STFT magnitude (re^2 + im^2 between Pow and
    Sqrt) in INT8 took its cosine from 0.89 to 0.54. `kept`: nodes already kept float."""
    inits = {i.name for i in model.graph.initializer}
    floats = _float_tensors(model) if floats is None else floats
    # only nodes that pass float data, joined only through float tensors: a shape computation (Shape ->
    # Gather -> Concat -> a Reshape's shape) neither is an island nor joins two groups
    nodes = [n for n in model.graph.node if n.op_type in op_types and n.name not in kept
             and any(o in floats for o in n.output)]
    index = {id(n): i for i, n in enumerate(nodes)}
    parent = list(range(len(nodes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    producer = {o: n for n in nodes for o in n.output}
    for n in nodes:
        for t in n.input:
            if t in producer and t in floats:
                parent[root(index[id(n)])] = root(index[id(producer[t])])
    computing = {root(i) for i, n in enumerate(nodes) if n.op_type in COMPUTE_OPS
                 or (n.op_type == "Gather" and n.input and n.input[0] in inits)}
    return [n.name for i, n in enumerate(nodes) if n.name and root(i) not in computing]


def _float_tensors(model) -> set[str]:
    """Names of the tensors holding floating-point data (by shape inference; without it, every tensor)."""
    from onnx import TensorProto, shape_inference

    kinds = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:   # shape inference is best effort: fall back to joining through everything
        return {t for n in model.graph.node for t in [*n.input, *n.output]}
    g = inferred.graph
    out = {v.name for v in [*g.value_info, *g.input, *g.output] if v.type.tensor_type.elem_type in kinds}
    return out | {i.name for i in g.initializer if i.data_type in kinds}


def attention_mask_nodes(model) -> list[str]:
    """Names of the Adds that put an attention mask on scores (one input derives, through a few ops, from
    a constant <= MASK_VALUE: `scores + where(mask, 0, -3.4e38)`) and of the Softmax nodes right after."""
    from onnx import numpy_helper

    big: set[str] = set()
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.size and arr.dtype.kind == "f" and float(arr.min()) <= MASK_VALUE:
            big.add(init.name)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            if arr.size and arr.dtype.kind == "f" and float(arr.min()) <= MASK_VALUE:
                big.add(node.output[0])
    producer = {o: n for n in model.graph.node for o in n.output}
    passes = {"Where", "Mul", "Sub", "Cast", "Unsqueeze", "Expand", "Reshape", "Neg", "Add"}
    memo: dict[str, bool] = {}

    def masky(tensor: str, depth: int) -> bool:
        if tensor in big:
            return True
        if depth == 0 or tensor not in producer or producer[tensor].op_type not in passes:
            return False
        if tensor not in memo:
            memo[tensor] = any(masky(i, depth - 1) for i in producer[tensor].input)
        return memo[tensor]

    adds = [n for n in model.graph.node if n.op_type == "Add" and
            any(producer.get(i) is not None and producer[i].op_type != "Add" and masky(i, 4) for i in n.input)]
    outputs = {o for n in adds for o in n.output}
    softmax = [n for n in model.graph.node if n.op_type == "Softmax" and n.input[0] in outputs]
    return [n.name for n in adds + softmax if n.name]
