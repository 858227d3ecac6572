"""OperatorFuser on ONNX graphs (same outputs, fewer nodes) and on PyTorch modules (torch.ao fusion)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from optimizers import OperatorFuser, OptimizerError, UnknownOption, evaluate
from tests.optimizers.graphs import op_counts


def test_onnx_fusion_folds_batchnorm_and_fuses_activations(convnet, convnet_data, tmp_path):
    out = OperatorFuser().fuse_operations(model=convnet, output=tmp_path / "fused.onnx", patterns=[
        ["Conv2D", "BatchNorm", "ReLU"], ["Linear", "ReLU"], ["Conv2D", "BatchNorm", "ReLU6"], ["Conv2D", "BatchNorm"]])
    changes = out.record.changes
    assert changes == {"BatchNormalization folded into Conv": 3, "Relu fused into FusedConv": 1,
                       "Clip fused into FusedConv": 1, "Relu fused into FusedGemm": 1}
    ops = op_counts(out.path)
    assert "BatchNormalization" not in ops and ops["FusedConv"] == 2 and ops["FusedGemm"] == 1
    assert ops.get("Relu", 0) == 0 and ops.get("Clip", 0) == 0
    fid = evaluate(out.path, convnet_data[:4], reference=convnet).fidelity
    assert fid.max_abs_error < 1e-4 and fid.cosine > 0.999999


def test_portable_target_uses_standard_ops_only(convnet, convnet_data, tmp_path):
    out = OperatorFuser(target="portable").fuse_operations(convnet, output=tmp_path / "p.onnx")
    model = onnx.load(str(out.path))
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert out.record.changes["BatchNormalization folded into Conv"] == 3
    assert any("portable target" in s.reason for s in out.record.skipped)
    assert evaluate(out.path, convnet_data[:4], reference=convnet).fidelity.max_abs_error < 1e-4


def test_mobilenet_fusion_is_exact(mobilenet, tmp_path):
    out = OperatorFuser().fuse_operations(mobilenet, output=tmp_path / "m.onnx")
    assert out.record.changes["BatchNormalization folded into Conv"] == 52
    assert out.record.changes["Clip fused into FusedConv"] == 35
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    assert evaluate(out.path, x, reference=mobilenet).fidelity.max_abs_error < 1e-3


def test_pytorch_module_fusion_with_torch_ao(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model.train()
    model(torch.randn(8, 3, 16, 16))  # running statistics that are not the defaults
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
    fused = OperatorFuser().fuse_operations(model)
    with torch.no_grad():
        after = fused.module(x)
    assert torch.allclose(before, after, atol=1e-5)
    rec = fused.record
    assert sorted(rec.settings["groups"]) == [["0", "1", "2"], ["3.0", "3.1"], ["6", "7"]]
    assert rec.changes == {"Conv2d+BatchNorm2d+ReLU fused": 1, "Conv2d+BatchNorm2d fused": 1,
                           "Linear+ReLU fused": 1}
    assert type(fused.module[0]).__name__ == "ConvReLU2d"
    assert any(s.op_type == "ReLU6" and "ReLU only" in s.reason for s in rec.skipped)
    assert rec.source_digest != rec.output_digest


def test_bad_patterns(convnet):
    with pytest.raises(UnknownOption, match="Conv2D"):
        OperatorFuser().fuse_operations(convnet, patterns=[["Conv2D", "Swizzle"]])
    with pytest.raises(OptimizerError, match="must start with a Conv2D or Linear"):
        OperatorFuser().fuse_operations(convnet, patterns=[["ReLU", "Conv2D"]])
    with pytest.raises(UnknownOption, match="onnxruntime, portable"):
        OperatorFuser(target="tensorrt")
