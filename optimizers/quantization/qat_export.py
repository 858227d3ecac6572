"""From torchao's converted PT2E QAT graph to an INT8 QDQ ONNX model that ONNX Runtime runs.

convert_pt2e leaves quantize -> dequantize pairs (torch's quantized_decomposed ops), which the TorchScript
ONNX exporter does not know. Each pair computes what aten's fake_quantize_per_tensor_affine /
fake_quantize_per_channel_affine compute, and the exporter writes those as QuantizeLinear ->
DequantizeLinear; so the pairs are swapped for them before export (qdq_as_fake_quant). The weights'
QuantizeLinear then runs on constants: fold_weight_quantizers stores the INT8 weights themselves (a quarter
of the float bytes) with only their DequantizeLinear left, the QDQ form ONNX Runtime fuses into
QLinearConv / QGemm kernels. The scales and zero points are the ones QAT trained with: nothing is
recalibrated."""

from __future__ import annotations

import numpy as np

from optimizers.errors import OptimizerError
from optimizers.graph.index import Graph

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def qdq_as_fake_quant(gm) -> int:
    """Replace every quantize -> dequantize pair of a converted PT2E GraphModule (in place) by the aten
    fake-quantize op computing the same, and drop torch.export's input guard (a traced Python bool);
    returns the number of pairs."""
    import torch

    qd = torch.ops.quantized_decomposed
    per_tensor = {qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor}
    graph, pairs = gm.graph, 0
    for q in list(graph.nodes):
        if q.op != "call_function" or q.target not in per_tensor | {qd.quantize_per_channel.default}:
            continue
        for dq in list(q.users):
            with graph.inserting_before(dq):
                if q.target in per_tensor:
                    x, scale, zp, lo, hi = q.args[:5]
                    if not isinstance(scale, torch.fx.Node):   # constants: stored as buffers, read by get_attr
                        scale = _constant(gm, torch.tensor(float(scale)))
                        zp = _constant(gm, torch.tensor(int(zp), dtype=torch.int32))
                    else:
                        zp = graph.call_method("to", (zp, torch.int32))
                    fq = graph.call_function(torch.ops.aten.fake_quantize_per_tensor_affine.tensor_qparams,
                                             (x, scale, zp, lo, hi))
                else:   # ONNX writes INT8 as -128..127: a narrower range (7-bit weights) is on that grid too
                    x, scale, zp, axis, lo, hi = q.args[:6]
                    if (lo, hi) != (-128, 127):
                        _snap_weight(gm, x, scale, zp, axis, lo, hi)
                        lo, hi = -128, 127
                    zp = graph.call_method("to", (zp, torch.int32))
                    fq = graph.call_function(torch.ops.aten.fake_quantize_per_channel_affine.default,
                                             (x, scale, zp, axis, lo, hi))
            dq.replace_all_uses_with(fq)
            graph.erase_node(dq)
            pairs += 1
        graph.erase_node(q)
    for node in list(graph.nodes):   # torch.export's input-shape guard: the ONNX model has a fixed shape
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            graph.erase_node(node)
    left = sorted({str(n.target) for n in graph.nodes if "quantized_decomposed" in str(n.target)})
    if left:
        raise OptimizerError(f"the QAT model holds quantization ops ONNX export cannot write ({', '.join(left)})")
    graph.lint()
    gm.recompile()
    return pairs


def _snap_weight(gm, weight, scale, zp, axis, lo, hi) -> None:
    """Put a constant weight on its narrow grid (e.g. 7 bits) in place, so that quantizing it again on the
    full INT8 range ONNX writes gives the same integers."""
    import torch

    def attr(node):
        if node.op != "get_attr":
            raise OptimizerError(f"the QAT model's weight '{node.name}' is not a constant; cannot export it")
        obj = gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj

    w = attr(weight)
    with torch.no_grad():
        w.copy_(torch.fake_quantize_per_channel_affine(w, attr(scale), attr(zp).to(torch.int32), axis, lo, hi))


def _constant(gm, value):
    """A get_attr node reading `value`, registered as a buffer of `gm` (a traced constant, not a call)."""
    i = 0
    while hasattr(gm, f"_edgefarm_qparam_{i}"):
        i += 1
    name = f"_edgefarm_qparam_{i}"
    gm.register_buffer(name, value)
    return gm.graph.get_attr(name)


def fold_weight_quantizers(model) -> int:
    """Fold every QuantizeLinear whose input, scale and zero point are constants into an INT8/UINT8
    initializer (in place): the DequantizeLinear after it then reads the stored integers. Returns how many."""
    from onnx import numpy_helper

    graph = Graph(model)
    folded = []
    for node in list(graph.g.node):
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        x, scale, zp = (graph.const(name) for name in node.input[:3])
        if x is None or scale is None or zp is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:   # per channel: along `axis`
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        info = np.iinfo(zp.dtype)
        values = np.clip(np.rint(x / scale) + zp.astype(np.int32), info.min, info.max).astype(zp.dtype)
        graph.remove([node])
        graph.g.initializer.append(numpy_helper.from_array(values, node.output[0]))
        folded.append(node.output[0])
    graph.prune()
    return len(folded)


def quantized_weight_ops(model) -> dict[str, int]:
    """{'Conv quantized': n, ...}: nodes whose weight is an INT8 initializer read through DequantizeLinear."""
    graph = Graph(model)
    counts: dict[str, int] = {}
    for node in graph.g.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        dq = graph.producer.get(node.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in graph.inits:
            key = f"{node.op_type} quantized"
            counts[key] = counts.get(key, 0) + 1
    return counts


def agreement(path, qat_model, dataset, rows: int = 64) -> dict[str, float]:
    """How closely ONNX Runtime's INT8 model at `path` follows the fake-quantized PyTorch model it came
    from, on the first `rows` samples of `dataset` (optimizers.data.feeds.Dataset): the largest output difference
    relative to the outputs' range and, for a classifier, the top-1 agreement."""
    import onnxruntime as ort
    import torch

    from optimizers.pytorch.inputs import select_output

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    samples = np.asarray([row for feed in dataset.feeds for row in next(iter(feed.values()))][:rows], np.float32)
    if not len(samples):
        return {"checked_samples": 0}
    with torch.no_grad():   # the QAT model takes a batch; the exported model one sample at a time
        ref = select_output(qat_model(torch.from_numpy(samples))).numpy()
    got = np.concatenate([sess.run(None, {name: x[None]})[0] for x in samples])
    worst = float(max(np.abs(r - g).max() / max(np.ptp(r), 1e-12) for r, g in zip(ref, got)))
    out = {"max_relative_difference_vs_qat_model": round(worst, 4), "checked_samples": len(samples)}
    if ref.ndim == 2 and ref.shape[1] > 1:   # a classifier
        out["top1_agreement_with_qat_model"] = round(float((ref.argmax(1) == got.argmax(1)).mean()), 4)
    return out
