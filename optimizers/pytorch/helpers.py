"""Helpers for PyTorch models: parameters, size, FLOPs (from the exported ONNX graph) and export of
any result to a single-file ONNX model the farm can measure."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from optimizers.errors import ModelError
from optimizers.graph.flops import graph_flops
from optimizers.pytorch.inputs import find_example_input, tensor_model


def count_params(model, nonzero: bool = False) -> int:
    """Number of parameters (or of non-zero ones, which is what unstructured pruning changes)."""
    return int(sum((p != 0).sum() if nonzero else p.numel() for p in model.parameters()))


def get_size(model) -> int:
    """Bytes of the serialized state dict (torch.save), i.e. the model's size on disk."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def example_for(model, input_shape: tuple[int, ...] | None = None, example_input=None, data=None, output=None):
    """The example input: zeros of `input_shape` when given, else found (optimizers.pytorch.inputs)."""
    import torch

    if input_shape is not None and example_input is None:
        example_input = torch.zeros(tuple(input_shape))
    return find_example_input(model, example_input, data, output).tensor


def export_onnx(model, path: str | Path, input_shape: tuple[int, ...] | None = None, opset: int = 17, *,
                example_input=None, data=None, output=None) -> Path:
    """Export to ONNX as one file (weights inside, no .data file), in eval mode, input 'input', output
    'logits' (the tensor `output` selects; `.logits` of a Hugging Face model by itself). The input shape is
    `input_shape`, `example_input`'s, or found from the data or the model."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = example_for(model, input_shape, example_input, data, output)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(tensor_model(model, example, output), (example,), str(path), input_names=["input"],
                              output_names=["logits"], opset_version=opset, dynamo=False)
    except Exception as exc:  # torch.onnx raises many types; name the model and the cause
        raise ModelError(f"could not export {type(model).__name__} to ONNX: {str(exc)[:300]}") from None
    finally:
        model.train(was_training)
    return path


def calculate_flops(model, input_shape: tuple[int, ...] | None = None, *, example_input=None, data=None,
                    output=None) -> int:
    """FLOPs of one inference, counted on the exported ONNX graph (optimizers.graph.flops' rules)."""
    import onnx

    example = example_for(model, input_shape, example_input, data, output)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", example_input=example, output=output)
        return graph_flops(onnx.load(str(path)), {"input": list(example.shape)}).total


def calculate_flops_reduction(original, optimized, input_shape: tuple[int, ...] | None = None, *,
                              example_input=None, data=None, output=None) -> float:
    """Share of FLOPs removed: 1 - optimized/original (0.4 means 40 % fewer), on one example input found
    from the original."""
    example = example_for(original, input_shape, example_input, data, output)
    return 1.0 - (calculate_flops(optimized, example_input=example, output=output)
                  / max(calculate_flops(original, example_input=example, output=output), 1))


def export_tflite(model, path: str | Path, input_shape: tuple[int, ...] | None = None, *, example_input=None,
                  data=None) -> Path:
    """A PyTorch model as a .tflite file via litert-torch (the optional extra `edgefarm[litert-torch]`,
    about 2 GB); without it, an OptimizerError that says so and what edgefarm does instead."""

    converter = tflite_converter()
    path = Path(path)
    example = example_for(model, input_shape, example_input, data)
    edge = converter.convert(tensor_model(model, example).eval(), (example,))
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
