"""Quantization-aware training with torchao's PT2E flow, then an INT8 QDQ ONNX model.

The model is captured with torch.export, prepared by torchao's `prepare_qat_pt2e` with the
X86InductorQuantizer's QAT configuration (per-channel symmetric INT8 weights, on 7 bits so that ONNX
Runtime's x86 kernels do not saturate; per-tensor affine UINT8 activations; Conv+BatchNorm trained as the folded conv ONNX Runtime will run), and fine-tuned with fake
quantization in the loop. `convert_to_int8` runs torchao's `convert_pt2e` (BatchNorm folded, weights on
their INT8 grid) and exports the result as an ONNX QDQ model with the scales QAT trained
(optimizers.quantization.qat_export); ONNX Runtime then runs it with INT8 kernels.

torchao's other QAT API (`quantize_` with `QATConfig` / `IntxFakeQuantizeConfig`) fake-quantizes Linear
and Embedding layers only, for LLMs: it leaves a CNN's convolutions in float, so it is not used here. The
eager-mode `torch.ao.quantization` flow this module used before is deprecated in torch."""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import time
import warnings
from pathlib import Path

from core.extras import install_hint
from optimizers.data.feeds import as_dataset
from optimizers.errors import ModelError, OptimizerError, UnknownOption
from optimizers.pytorch.helpers import export_onnx
from optimizers.pytorch.inputs import find_example_input, output_module, tensor_model
from optimizers.pytorch.training import Progress, train
from optimizers.quantization.qat_export import (
    agreement,
    fold_weight_quantizers,
    qdq_as_fake_quant,
    quantized_weight_ops,
)
from optimizers.record import OptimizationRecord, write_result

log = logging.getLogger(__name__)

PRECISIONS = ("int8",)
QAT_SETTINGS = {"flow": "torchao PT2E (prepare_qat_pt2e, convert_pt2e)", "quantizer": "X86InductorQuantizer",
                "weights": "int8 on 7 bits (-64..63), per channel, symmetric",
                "activations": "uint8, per tensor, affine"}


def _torchao():
    """torchao's PT2E QAT entry points. Its import logs, at WARNING, that its CUDA-only kernel libraries
    (mxfp8, CUTLASS) and Triton are missing on a CPU-only torch; nothing here uses them, so those loggers are
    held at ERROR for the import only."""
    quiet = [logging.getLogger(name) for name in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        import torchao.quantization.pt2e as pt2e
        from torchao.quantization.pt2e import quantize_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as exc:
        raise OptimizerError(f"QAT needs torchao ({install_hint('torchao')}); importing it failed: {exc}") from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    return pt2e, quantize_pt2e, x86


def _dynamic_batch(model):
    """torch.export's dynamic_shapes leaving the batch of the one input free (the structure follows
    forward's signature: a `*args` forward takes its inputs as one tuple)."""
    import inspect

    import torch

    batch = {0: torch.export.Dim.AUTO}
    params = list(inspect.signature(model.forward).parameters.values())
    return ((batch,),) if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL else (batch,)


def _seven_bit_weights(config):
    """The X86 QAT configuration with weights on 7 bits (-64..63). With 8, ONNX Runtime's U8S8 kernels on x86
    CPUs without VNNI (AVX2's VPMADDUBSW adds two u8 x s8 products in 16 bits) saturate: on a small CNN the
    INT8 model left the QAT model's outputs by 12 % of their range and changed 9 % of its top-1 answers.
    (The X86 quantizer's reduce_range puts activations on 7 bits instead, but a 0..127 activation under
    ONNX's 0..255 QuantizeLinear keeps ONNX Runtime from fusing ReLU6 into it: MobileNetV2 then ran float
    convolutions, 3.6x slower.)"""
    from dataclasses import replace

    return replace(config, weight=replace(config.weight, quant_min=-64, quant_max=63))


class QATTrainer:
    """`QATTrainer(model, target_precision="int8").train(train_data, epochs, learning_rate)` -> the
    fake-quantized model; then `convert_to_int8(qat_model, calibration_data)` -> an INT8 ONNX file."""

    def __init__(self, model, target_precision: str = "int8", output=None) -> None:
        if target_precision not in PRECISIONS:
            raise UnknownOption("QAT target precision", target_precision, PRECISIONS)
        self.model = model
        self.target_precision = target_precision
        self.output = output   # selects the output tensor of a model that returns more (optimizers.pytorch.inputs)

    def prepare(self, example=None):
        """The model captured by torch.export (batch size left dynamic) with torchao's fake quantizers
        inserted; it switches train/eval like a module."""
        import torch

        pt2e, quantize_pt2e, x86 = _torchao()
        if example is None:
            example = find_example_input(self.model, output=self.output).tensor
        example = torch.cat([example[:1]] * 2)   # a batch of 2: torch.export would fix a batch of 1
        model = copy.deepcopy(self.model).train()
        try:
            graph = torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch(model)).module()
        except Exception as exc:  # torch.export raises many types; name the model and the cause
            raise ModelError(f"torch.export cannot capture {type(self.model).__name__} for QAT (the PT2E flow "
                             f"needs one graph): {str(exc).splitlines()[0][:300]}") from None
        config = _seven_bit_weights(x86.get_default_x86_inductor_quantization_config(is_qat=True))
        quantizer = x86.X86InductorQuantizer().set_global(config)
        qat = quantize_pt2e.prepare_qat_pt2e(graph, quantizer)
        pt2e.allow_exported_model_train_eval(qat)
        n = sum(1 for m in qat.modules() if isinstance(m, pt2e.FakeQuantizeBase)
                and m.qscheme == torch.per_channel_symmetric)
        if n == 0:
            raise OptimizerError(f"{type(self.model).__name__} has no Conv2d/Linear layers to quantize")
        log.info("QAT: %d layers with fake-quantized weights", n)
        # what convert_to_int8 needs (and checks that it was given this trainer's model)
        qat._edgefarm_qat = {"model": type(self.model).__name__, "weights": n, "example": example[:1]}
        torch.manual_seed(0)
        return qat

    def train(self, train_data, epochs: int = 1, learning_rate: float = 1e-4, progress: Progress | None = None,
              validation=None, **kw):
        """Fine-tune with fake quantization in the loop; returns the QAT model (eval mode, observers off).
        The rate is low on purpose: on the example, 1 epoch at 1e-4 keeps float accuracy (97.73 %),
        at 5e-4 it loses 1.1 points."""
        pt2e, _, _ = _torchao()
        example = find_example_input(self.model, data=train_data, output=self.output)
        if self.output is not None or tensor_model(self.model, example.tensor) is not self.model:
            self.model = output_module(self.model, self.output)   # the captured graph needs a tensor out
        qat = self.prepare(example.tensor)
        train(qat, train_data, epochs=epochs, learning_rate=learning_rate, progress=progress,
              validation=validation, **kw)
        qat.apply(pt2e.disable_observer)
        qat.eval()
        return qat


def convert_to_int8(qat_model, calibration_data, output: str | Path | None = None,
                    input_shape: tuple[int, ...] | None = None):
    """The QAT model as an INT8 QDQ ONNX model (OptimizedModel) with the weights and activation scales QAT
    trained; nothing is recalibrated. `calibration_data` (as for Quantizer: an array, (inputs, labels), an
    .npz, a Dataset or feed dicts) checks the ONNX model against the QAT model on up to 64 samples (the
    record's metrics). The input shape exported is `input_shape`, else the one QAT was captured with."""
    import onnx

    meta = getattr(qat_model, "_edgefarm_qat", None)
    if meta is None:
        raise OptimizerError("convert_to_int8 takes the model QATTrainer.train returned")
    pt2e, quantize_pt2e, _ = _torchao()
    started = time.perf_counter()
    if isinstance(calibration_data, tuple) and len(calibration_data) == 2:
        calibration_data = calibration_data[0]  # (inputs, labels): the inputs
    if hasattr(calibration_data, "numpy"):
        calibration_data = calibration_data.numpy()
    with warnings.catch_warnings():   # torch's own deepcopy of an exported graph's pytree specs, not ours
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        converted = quantize_pt2e.convert_pt2e(copy.deepcopy(qat_model), fold_quantize=False)
    pairs = qdq_as_fake_quant(converted)
    pt2e.allow_exported_model_train_eval(converted)
    example = None if input_shape else meta["example"]
    with tempfile.TemporaryDirectory(prefix="edgefarm-qat-") as tmp:
        raw = export_onnx(converted, Path(tmp) / "qat-qdq.onnx", input_shape, example_input=example).read_bytes()
    model = onnx.load_from_string(raw)
    checks = as_dataset(calibration_data, model)
    record = OptimizationRecord(technique="qat:int8", settings=dict(QAT_SETTINGS),
                                source=f"<PyTorch {meta['model']} after QAT>",
                                source_digest=hashlib.sha256(raw).hexdigest(), source_size_bytes=len(raw))
    folded = fold_weight_quantizers(model)
    record.changes = {**quantized_weight_ops(model), "QDQ pairs": pairs, "weights stored as INT8": folded}
    record.notes.append("weights and activation scales trained with torchao's PT2E fake quantization and "
                        "exported as QDQ, nothing recalibrated; the source size is the QDQ export with float "
                        "weights")
    out = Path(output) if output else Path.cwd() / "qat.int8.onnx"
    result = write_result(model, out, record, started)
    record.metrics.update(agreement(out, qat_model, checks))
    result.save_record()
    return result
