"""Helpers for PyTorch models: parameters, size, FLOPs (from the exported ONNX graph) and export of
any result to a single-file ONNX model the farm can measure."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from optimizers.errors import ModelError

DIGITS_INPUT = (1, 1, 28, 28)


def count_params(model, nonzero: bool = False) -> int:
    """Number of parameters (or of non-zero ones, which is what unstructured pruning changes)."""
    return int(sum((p != 0).sum() if nonzero else p.numel() for p in model.parameters()))


def get_size(model) -> int:
    """Bytes of the serialized state dict (torch.save), i.e. the model's size on disk."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def export_onnx(model, path: str | Path, input_shape: tuple[int, ...] = DIGITS_INPUT, opset: int = 17) -> Path:
    """Export to ONNX as one file (weights inside, no .data file), in eval mode, input 'input',
    output 'logits'."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(model, (torch.zeros(input_shape),), str(path), input_names=["input"],
                              output_names=["logits"], opset_version=opset, dynamo=False)
    except Exception as exc:  # torch.onnx raises many types; name the model and the cause
        raise ModelError(f"could not export {type(model).__name__} to ONNX: {str(exc)[:300]}") from None
    finally:
        model.train(was_training)
    return path


def calculate_flops(model, input_shape: tuple[int, ...] = DIGITS_INPUT) -> int:
    """FLOPs of one inference, counted on the exported ONNX graph (the controller's FLOP rules)."""
    import onnx

    from optimizers.flops import graph_flops

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", input_shape)
        return graph_flops(onnx.load(str(path)), {"input": list(input_shape)}).total


def calculate_flops_reduction(original, optimized, input_shape: tuple[int, ...] = DIGITS_INPUT) -> float:
    """Share of FLOPs removed: 1 - optimized/original (0.4 means 40 % fewer)."""
    return 1.0 - calculate_flops(optimized, input_shape) / max(calculate_flops(original, input_shape), 1)


def export_tflite(model, path: str | Path, input_shape: tuple[int, ...] = DIGITS_INPUT) -> Path:
    """A PyTorch model as a .tflite file via litert-torch (the optional extra `edgefarm[litert-torch]`,
    about 2 GB); without it, an OptimizerError that says so and what edgefarm does instead."""
    import torch

    converter = tflite_converter()
    path = Path(path)
    edge = converter.convert(model.eval(), (torch.zeros(input_shape),))
    edge.export(str(path))
    return path


def tflite_converter():
    """The litert-torch module (or ai_edge_torch, its former name); an OptimizerError saying what to install
    when neither is."""
    import importlib

    from optimizers.errors import OptimizerError

    for name in ("litert_torch", "ai_edge_torch"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise OptimizerError("converting PyTorch to .tflite needs litert-torch, an optional extra of about 2 GB "
                         "(pip install 'edgefarm[litert-torch]'); without it edgefarm measures the ONNX export "
                         "with onnxruntime instead")
