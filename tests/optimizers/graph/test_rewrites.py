"""Operator rewrites: each one changes the graph it targets and keeps the outputs within tolerance."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from optimizers import OperatorOptimizer, UnknownOption, evaluate
from optimizers.graph.rewrites import PORTABLE, REWRITES, matching_rewrites
from tests.optimizers import graphs

# rewrite -> (op types that must be gone, op types that must appear)
EXPECT = {
    "gelu": ({"Erf", "Div"}, {"Gelu"}),
    "swish": ({"Sigmoid"}, {"QuickGelu"}),
    "hardswish": ({"Clip", "HardSigmoid", "Div", "Mul", "Add"}, {"HardSwish"}),
    "div_to_mul": ({"Div"}, {"Mul"}),
    "transpose_chain": (set(), set()),
    "reshape_chain": ({"Identity"}, set()),
    "constant_folding": ({"Shape"}, set()),
}


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("name", list(REWRITES))
def test_each_rewrite_keeps_outputs(name, tmp_path):
    src = graphs.rewrite_graph(name, tmp_path / f"{name}.onnx")
    out = OperatorOptimizer([name]).optimize(src, output=tmp_path / f"{name}.out.onnx")
    assert out.record.changes.get(name, 0) >= 1, out.record
    assert matching_rewrites(src)[name] == out.record.changes[name]   # what optimize's plan counts
    gone, new = EXPECT[name]
    ops = _ops(out.path)
    assert not gone & set(ops) and new <= set(ops), ops
    assert len(ops) < len(_ops(src)) or name == "div_to_mul"
    x = np.random.default_rng(0).standard_normal((4, 2, 8, 16)).astype(np.float32)
    fid = evaluate(out.path, [{"x": v} for v in x], reference=src).fidelity
    assert fid.max_abs_error < 1e-5


def test_transpose_pairs_cancel_or_merge(tmp_path):
    src = graphs.rewrite_graph("transpose_chain", tmp_path / "t.onnx")
    out = OperatorOptimizer(["transpose_chain"]).optimize(src, output=tmp_path / "t2.onnx")
    assert out.record.changes["transpose_chain"] == 2
    assert _ops(out.path).count("Transpose") == 1  # 4 -> 1: one pair cancelled, one merged


@pytest.mark.slow   # exports MiniLM
def test_real_transformer_gelu_and_folding(minilm, minilm_data, tmp_path):
    out = OperatorOptimizer().optimize(minilm, output=tmp_path / "minilm.rw.onnx")
    assert out.record.changes["gelu"] == 6  # one per encoder layer
    assert out.record.changes["constant_folding"] > 0
    assert out.record.metrics["nodes_after"] < out.record.metrics["nodes_before"]
    fid = evaluate(out.path, minilm_data[1], reference=minilm).fidelity
    assert fid.cosine > 0.99999 and fid.max_abs_error < 1e-4


def test_real_silero_constant_folding(silero, silero_data, tmp_path):
    out = OperatorOptimizer(list(PORTABLE)).optimize(silero, output=tmp_path / "vad.rw.onnx")
    model = onnx.load(str(out.path))
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    assert out.record.metrics["nodes_after"] < out.record.metrics["nodes_before"] / 2
    assert evaluate(out.path, silero_data[:4], reference=silero).fidelity.max_abs_error < 1e-5


def _runtime_noise(path, feeds) -> float:
    """How far ONNX Runtime's own graph optimizations move this unmodified model's outputs (max abs)."""
    import onnxruntime as ort

    def run(level):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return np.concatenate([np.ravel(sess.run(None, f)[0]) for f in feeds])

    return float(np.abs(run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
                        - run(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)).max())


@pytest.mark.parametrize("example, rewrite, sites, new_op, gone", [
    ("example:ppocr-det", "hardswish", 24, "HardSwish", {"Clip", "Div"}),   # PP-OCRv4: Add->Clip->Mul->Div, opset 12
    ("example:yolov8n", "swish", 57, "QuickGelu", set()),   # YOLOv8n: Sigmoid->Mul (the class scores' Sigmoid stays)
])
def test_real_detector_activation_rewrite_is_output_equal(example, rewrite, sites, new_op, gone, tmp_path):
    """Each activation rewrite on the real export it was made for, judged on real photos (the model's own
    preprocessing): every site found, the pattern gone, outputs equal within 1e-5, or within what ONNX
    Runtime's own float graph optimizations change on the unmodified model when that is more (PP-OCRv4's
    probability map moves by 2.1e-5 between ORT_DISABLE_ALL and ORT_ENABLE_ALL; the rewrite by 2.1e-5)."""
    from controller.optimization.sources import onnx_source

    source = onnx_source(example)
    out = OperatorOptimizer([rewrite]).optimize(source.baseline, output=tmp_path / "rewritten.onnx")
    assert out.record.changes == {rewrite: sites}
    assert not gone & set(_ops(out.path)) and _ops(out.path).count(new_op) == sites
    fid = evaluate(out.path, source.evaluation, reference=source.baseline).fidelity
    tolerance = max(1e-5, 1.25 * _runtime_noise(source.baseline, source.evaluation.feeds))
    assert fid.max_abs_error <= tolerance and fid.cosine > 0.99999, (fid, tolerance)


def test_unknown_rewrite_lists_the_known_ones():
    with pytest.raises(UnknownOption, match="constant_folding, gelu, swish"):
        OperatorOptimizer(["fold_everything"])


def test_all_rewrites_on_an_old_opset_with_silu_and_hardswish(tmp_path):
    """Swish leaves a com.microsoft QuickGelu before hard-swish raises the opset to 14: the converter must
    know that domain (it raised 'No opset import for domain com.microsoft' before)."""
    from onnx import TensorProto, helper, numpy_helper

    c = lambda v, n: numpy_helper.from_array(np.asarray(v, np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="sig"), helper.make_node("Mul", ["x", "s"], ["m"], name="silu"),
             helper.make_node("Add", ["m", "three"], ["a"], name="add"),
             helper.make_node("Clip", ["a", "zero", "six"], ["cl"], name="clip"),
             helper.make_node("Mul", ["m", "cl"], ["p"], name="mul"), helper.make_node("Div", ["p", "six"], ["y"], name="div")]
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
                              [c(3.0, "three"), c(0.0, "zero"), c(6.0, "six")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    onnx.save(model, str(tmp_path / "old.onnx"))
    out = OperatorOptimizer().optimize(tmp_path / "old.onnx", output=tmp_path / "new.onnx")
    assert out.record.changes["swish"] == 1 and out.record.changes["hardswish"] == 1
    x = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
    assert evaluate(out.path, [{"x": v} for v in x], reference=tmp_path / "old.onnx").fidelity.max_abs_error < 1e-5
