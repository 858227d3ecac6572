"""Operator rewrites: each one changes the graph it targets and keeps the outputs within tolerance."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from optimizers import OperatorOptimizer, UnknownOption, evaluate
from optimizers.rewrites import PORTABLE, REWRITES
from tests.optimizers import graphs

# rewrite -> (op types that must be gone, op types that must appear)
EXPECT = {
    "gelu": ({"Erf", "Div"}, {"Gelu"}),
    "swish": ({"Sigmoid"}, {"QuickGelu"}),
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


def test_unknown_rewrite_lists_the_known_ones():
    with pytest.raises(UnknownOption, match="constant_folding, gelu, swish"):
        OperatorOptimizer(["fold_everything"])
