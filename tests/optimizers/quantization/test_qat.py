"""QAT on torchao's PT2E flow: the ONNX model ONNX Runtime runs is INT8 (QLinearConv kernels, INT8 weights
stored), computes what the fake-quantized PyTorch model computed, and no deprecated torch.ao API is used.
A small CNN on 600 real digits keeps it to seconds; the accuracy on the example is in test_torch_techniques."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.slow   # quantization-aware training

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from optimizers import OptimizerError, QATTrainer, convert_to_int8, digits_student  # noqa: E402
from optimizers.data.digits import load_digits_data  # noqa: E402
from optimizers.errors import ModelError  # noqa: E402
from optimizers.pytorch.helpers import export_onnx  # noqa: E402
from optimizers.pytorch.training import train  # noqa: E402
from optimizers.quantization.qat import _torchao  # noqa: E402
from optimizers.quantization.qat_export import fold_weight_quantizers, qdq_as_fake_quant  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


@pytest.fixture(scope="module")
def trained(digits):
    """A small float CNN (Conv+BatchNorm+ReLU) trained 2 epochs, then 1 QAT epoch; warnings recorded."""
    torch.manual_seed(0)
    model = digits_student()
    train(model, digits.train.subset(600), epochs=2, learning_rate=3e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qat = QATTrainer(model).train(digits.train.subset(600), epochs=1, learning_rate=1e-4)
    return model, qat, caught


def test_the_onnx_model_runs_int8_kernels_and_follows_the_qat_model(trained, digits, tmp_path):
    _, qat, _ = trained
    out = convert_to_int8(qat, digits.train.x[:64], output=tmp_path / "qat.onnx")
    model = onnx.load(str(out.path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert out.record.changes["Conv quantized"] == 3 and out.record.changes["Gemm quantized"] == 1
    int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) > 1]
    assert len(int8) == 4 and not [i for i in model.graph.initializer
                                   if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) > 1]
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "as-run.onnx")
    ort.InferenceSession(str(out.path), so, providers=["CPUExecutionProvider"])
    assert "QLinearConv" in {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
    assert out.record.metrics["checked_samples"] == 64
    assert out.record.metrics["top1_agreement_with_qat_model"] >= 0.95, out.record.metrics
    assert out.record.metrics["max_relative_difference_vs_qat_model"] < 0.1, out.record.metrics
    assert out.record_path.exists() and out.size_ratio > 2


def test_the_export_steps_keep_what_the_converted_model_computes(trained, digits, tmp_path):
    """qdq_as_fake_quant changes no output; storing the weights as INT8 changes no ONNX Runtime output."""
    pt2e, quantize_pt2e, _ = _torchao()
    _, qat, _ = trained
    x = torch.as_tensor(digits.test.x[:16])
    converted = quantize_pt2e.convert_pt2e(copy.deepcopy(qat), fold_quantize=False)
    with torch.no_grad():
        before = converted(x)
        assert qdq_as_fake_quant(converted) == 12   # 4 weights, 8 activations
        assert torch.allclose(converted(x), before, atol=1e-6)
    pt2e.allow_exported_model_train_eval(converted)
    path = export_onnx(converted, tmp_path / "float-weights.onnx", example_input=x[:1])
    model = onnx.load(str(path))
    assert fold_weight_quantizers(model) == 4
    onnx.save(model, str(tmp_path / "int8-weights.onnx"))
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x[:1].numpy()})[0]
            for p in (path, tmp_path / "int8-weights.onnx")]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (tmp_path / "int8-weights.onnx").stat().st_size < path.stat().st_size / 2


def test_qat_uses_no_deprecated_torch_ao_api(trained):
    _, _, caught = trained
    assert not [w for w in caught if "torch.ao.quantization" in str(w.message)]


def test_qat_keeps_the_float_model_and_can_convert_twice(trained, digits, tmp_path):
    model, qat, _ = trained
    assert isinstance(model[0], torch.nn.Conv2d) and isinstance(model[1], torch.nn.BatchNorm2d)
    with warnings.catch_warnings():   # no FutureWarning reaches the user (torch's pytree deepcopy once did)
        warnings.simplefilter("error", FutureWarning)
        a = convert_to_int8(qat, (digits.train.x[:8], digits.train.y[:8]), output=tmp_path / "a.onnx")
    b = convert_to_int8(qat, digits.train.x[:8], output=tmp_path / "b.onnx")
    assert a.record.output_digest == b.record.output_digest


@pytest.mark.parametrize("call,error,message", [
    (lambda: convert_to_int8(digits_student(), np.zeros((2, 1, 28, 28), np.float32)), OptimizerError,
     "takes the model QATTrainer.train returned"),
    (lambda: QATTrainer(torch.nn.Sequential(torch.nn.ReLU())).prepare(torch.zeros(1, 4)), OptimizerError,
     "no Conv2d/Linear layers"),
    (lambda: QATTrainer(_DataDependent()).prepare(torch.zeros(1, 4)), ModelError,
     "torch.export cannot capture _DataDependent for QAT"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


class _DataDependent(torch.nn.Module):
    """A branch on a tensor's value: one graph cannot hold it, so torch.export refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_relu6_convs_run_as_int8_kernels(digits, tmp_path):
    """MobileNetV2's Conv -> ReLU6 -> QuantizeLinear: ONNX Runtime fuses ReLU6 into the quantizer only when
    its range covers the quantizer's (8-bit activations); else every conv ran in float, 3.6x slower."""
    from optimizers.data.digits import digits_mobilenetv2

    torch.manual_seed(0)
    qat = QATTrainer(digits_mobilenetv2(width=0.5)).train(digits.train.subset(128), epochs=1)
    out = convert_to_int8(qat, digits.train.x[:8], output=tmp_path / "mbv2.onnx")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "as-run.onnx")
    ort.InferenceSession(str(out.path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") >= 0.6 * out.record.changes["Conv quantized"], ops
