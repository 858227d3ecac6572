"""Quantization-aware training with PyTorch's own eager-mode flow (torch.ao.quantization: fake
quantization of weights per channel and of activations per tensor), then an INT8 QDQ ONNX model.

convert_to_int8 does not use torch's quantized CPU kernels (their ONNX export is not supported): it
writes the trained weights, already on the INT8 grid the fake quantizers learned, into the float
architecture, exports that to ONNX, and lets ONNX Runtime's quantizer write the QDQ model, calibrating
activation ranges on the given data. ONNX Runtime then runs it with INT8 kernels."""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

from optimizers.errors import OptimizerError, UnknownOption
from optimizers.torch_helpers import export_onnx
from optimizers.torch_inputs import find_example_input, output_module, tensor_model
from optimizers.training import Progress, train

log = logging.getLogger(__name__)

PRECISIONS = ("int8",)


def _qconfig():
    """Per-channel symmetric INT8 weights, per-tensor affine UINT8 activations, as plain FakeQuantize
    modules (the fused observer variant of the default QAT qconfig cannot be traced)."""
    import torch
    from torch.ao import quantization as tq

    return tq.QConfig(
        activation=tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                             dtype=torch.quint8, qscheme=torch.per_tensor_affine),
        weight=tq.FakeQuantize.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver, quant_min=-127,
                                         quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                         ch_axis=0))


class QATTrainer:
    """`QATTrainer(model, target_precision="int8").train(train_data, epochs, learning_rate)` -> the
    fake-quantized model; then `convert_to_int8(qat_model, calibration_data)` -> an INT8 ONNX file."""

    def __init__(self, model, target_precision: str = "int8", output=None) -> None:
        if target_precision not in PRECISIONS:
            raise UnknownOption("QAT target precision", target_precision, PRECISIONS)
        self.model = model
        self.target_precision = target_precision
        self.output = output   # selects the output tensor of a model that returns more (torch_inputs)

    def prepare(self):
        """BatchNorm folded into the convs (torch.ao fusion), then fake quantizers inserted."""
        import torch
        from torch.ao import quantization as tq

        from optimizers.fusion import OperatorFuser

        folded = OperatorFuser().fuse_operations(copy.deepcopy(self.model).eval(),
                                                 patterns=[["Conv2D", "BatchNorm"]]).module
        float_arch = copy.deepcopy(folded)
        wrapped = tq.QuantWrapper(folded)
        wrapped.qconfig = _qconfig()
        wrapped.train()
        qat = tq.prepare_qat(wrapped, inplace=False)
        qat._edgefarm_float = float_arch  # the architecture convert_to_int8 writes the weights into
        n = sum(1 for m in qat.modules() if hasattr(m, "weight_fake_quant"))
        if n == 0:
            raise OptimizerError(f"{type(self.model).__name__} has no Conv2d/Linear layers to quantize")
        log.info("QAT: %d layers with fake-quantized weights", n)
        torch.manual_seed(0)
        return qat

    def train(self, train_data, epochs: int = 1, learning_rate: float = 1e-4, progress: Progress | None = None,
              validation=None, **kw):
        """Fine-tune with fake quantization in the loop; returns the QAT model (eval mode, observers off).
        The rate is low on purpose: on the example, 1 epoch at 1e-4 keeps float accuracy (97.73 %),
        at 5e-4 it loses 1.1 points."""
        from torch.ao import quantization as tq

        example = find_example_input(self.model, data=train_data, output=self.output)
        if self.output is not None or tensor_model(self.model, example.tensor) is not self.model:
            self.model = output_module(self.model, self.output)   # fake quantizers need a tensor out
        qat = self.prepare()
        train(qat, train_data, epochs=epochs, learning_rate=learning_rate, progress=progress,
              validation=validation, **kw)
        qat.apply(tq.disable_observer)
        qat.eval()
        return qat


def convert_to_int8(qat_model, calibration_data, output: str | Path | None = None,
                    input_shape: tuple[int, ...] | None = None):
    """The QAT model as an INT8 QDQ ONNX model (OptimizedModel): trained, grid-snapped weights exported,
    then ONNX Runtime's static quantizer with activation ranges from `calibration_data` (inputs, as for
    Quantizer: an array, .npz or iterable)."""
    import torch

    from optimizers.quantization import Quantizer

    float_model = getattr(qat_model, "_edgefarm_float", None)
    if float_model is None:
        raise OptimizerError("convert_to_int8 takes the model QATTrainer.train returned")
    float_model = copy.deepcopy(float_model).eval()
    inner = qat_model.module  # inside the QuantWrapper
    targets = dict(float_model.named_modules())
    with torch.no_grad():
        for name, module in inner.named_modules():
            if not hasattr(module, "weight_fake_quant"):
                continue
            dest = targets[name]
            dest.weight.copy_(module.weight_fake_quant(module.weight))
            if getattr(module, "bias", None) is not None:
                dest.bias.copy_(module.bias)
    if isinstance(calibration_data, tuple) and len(calibration_data) == 2:
        calibration_data = calibration_data[0]  # (inputs, labels): the inputs calibrate
    calibration_data = calibration_data.numpy() if hasattr(calibration_data, "numpy") else calibration_data
    with tempfile.TemporaryDirectory(prefix="edgefarm-qat-") as tmp:
        src = export_onnx(float_model, Path(tmp) / "qat-float.onnx", input_shape, data=calibration_data)
        out = Path(output) if output else Path.cwd() / "qat.int8.onnx"
        result = Quantizer("int8").quantize(src, calibration_data=calibration_data, output=out)
    result.record.technique = "qat:int8"
    result.record.notes.append("weights trained with PyTorch fake quantization (per-channel symmetric INT8); "
                               "activation ranges calibrated by ONNX Runtime (MinMax)")
    result.save_record()
    return result
