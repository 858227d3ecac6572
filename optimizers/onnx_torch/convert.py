"""An ONNX model as a PyTorch module, so that the training-time techniques (pruning, distillation, low-rank)
reach a model that exists only as ONNX: the input shape fixed, the shape subgraphs folded by onnxslim, the
graph converted by onnx2torch into a torch.fx GraphModule, and the module checked against ONNX Runtime on
the calibration inputs before anything changes it."""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optimizers.errors import DataMismatch, OptimizerError

MAX_RELATIVE_ERROR = 1e-4   # the converted module's outputs vs ONNX Runtime's, relative to the output's range
MIN_SPAN = 1e-2             # the range used for a flat output (a text map with no text: rounding is not error)
INSTALL = ("converting an ONNX model to PyTorch needs onnxslim and onnx2torch: pip install 'edgefarm[optimize]' "
           "&& pip install --no-deps onnx2torch==1.5.15 (its torchvision requirement serves only NMS/RoiAlign "
           "models, and torchvision's wheels do not load beside torch 2.13)")


class ConversionError(OptimizerError):
    """The ONNX model cannot be turned into a PyTorch module that gives its outputs."""


@dataclass
class ConvertedModel:
    """A PyTorch module that computes what an ONNX model computes, at one input shape."""

    module: object                          # torch.fx.GraphModule
    path: Path                              # the ONNX model it came from
    input_names: list[str]
    output_names: list[str]
    input_shapes: dict[str, list[int]]      # the fixed shapes it was converted at
    dynamic_dims: dict[str, list[int]] = field(default_factory=dict)   # input name -> dims dynamic in the file
    max_error: float = 0.0                  # max |torch - onnxruntime| / output range, on the check inputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shapes[self.input_names[0]])


@contextlib.contextmanager
def _torchvision_for_import():
    """onnx2torch imports torchvision at import time, only for its NonMaxSuppression and RoiAlign converters.
    Where torchvision does not load (its wheels do not load beside torch 2.13), onnx2torch gets a stand-in
    for the duration of its import whose two functions say what is missing; nothing else ever sees it."""
    try:
        importlib.import_module("torchvision")
        yield
        return
    except Exception:   # not installed, or a build that does not load beside this torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

    def missing(*_a, **_k):
        raise ConversionError("this model's NonMaxSuppression/RoiAlign needs torchvision, which does not load here")

    stand_in = types.ModuleType("torchvision")
    stand_in.ops = types.ModuleType("torchvision.ops")
    stand_in.ops.nms = stand_in.ops.box_convert = stand_in.ops.roi_align = missing
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, stand_in.ops
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)


def quietly(fn):
    """Run `fn` without the warnings onnx2torch's modules and torch.onnx's tracer give on every converted
    graph (tensors turned into Python values while tracing, the legacy exporter's notice): they are about
    dynamic shapes, which a converted module at its fixed shape does not have, and a user can act on none."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"onnx2torch(\..*)?")
            warnings.filterwarnings("ignore", message=r".*(legacy TorchScript-based ONNX export|requires_grad=True "
                                                      r"to a scalar|Consider using tensor\.detach).*")
            return fn(*args, **kwargs)

    return run


def _libraries():
    try:
        import onnxslim
        with _torchvision_for_import():
            import onnx2torch
    except ImportError:
        raise OptimizerError(INSTALL) from None
    return onnxslim, onnx2torch


def _fixed(model, shapes: dict[str, list[int]]):
    """A copy of `model` whose inputs have the given shapes (the dynamic dims fixed)."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for inp in fixed.graph.input:
        if inp.name in shapes:
            for dim, value in zip(inp.type.tensor_type.shape.dim, shapes[inp.name]):
                dim.ClearField("dim_param")
                dim.dim_value = int(value)
    return fixed


def _unsupported(exc: Exception) -> str:
    """The op named in onnx2torch's 'Converter is not implemented (...)' message."""
    op = re.search(r"operation_type='(\w+)'", str(exc))
    version = re.search(r"version=(\d+)", str(exc))
    return f"{op.group(1)} (opset {version.group(1)})" if op and version else op.group(1) if op else str(exc)[:120]


def _image_like(specs, shapes) -> dict[str, np.ndarray]:
    """One synthetic check input, uniform in [0, 1) like a photo scaled by 1/255 (normal noise drives deep
    ReLU/Clip stacks to values no image gives, where float rounding of the two runtimes drifts apart)."""
    rng = np.random.default_rng(0)
    return {s.name: rng.random(shapes[s.name]).astype(s.dtype) for s in specs}


def fixed_shapes(model, input_shapes: dict[str, list[int]] | None) -> tuple[list, dict[str, list[int]]]:
    """The model's input specs and every input's concrete shape (its fixed dims, the dynamic ones from
    `input_shapes`); a DataMismatch naming the flag and the Python argument when a dynamic dim has no value."""
    from core.errors import JobError
    from core.inputs import resolve_shapes
    from optimizers.graph.model import onnx_input_specs

    specs = onnx_input_specs(model)
    try:
        return specs, resolve_shapes(specs, dict(input_shapes or {}))
    except JobError as exc:   # (the CLI's flag is named; from Python the same shapes go in input_shapes)
        raise DataMismatch(f"{exc} (from Python: input_shapes={{'name': [dims]}})") from None


@quietly
def convert_onnx(path: str | Path, input_shapes: dict[str, list[int]] | None = None,
                 check_feeds: list[dict[str, np.ndarray]] | None = None) -> ConvertedModel:
    """`path` as a torch.fx GraphModule, its dynamic dims fixed by `input_shapes`; checked against ONNX
    Runtime on `check_feeds` (or one synthetic input): a ConversionError when it cannot be converted (the
    first op onnx2torch lacks is named) or when its outputs differ by more than MAX_RELATIVE_ERROR."""
    import onnx

    path = Path(path)
    onnxslim, onnx2torch = _libraries()
    model = onnx.load(str(path))
    specs, shapes = fixed_shapes(model, input_shapes)
    if len(specs) != 1 or len(shapes[specs[0].name]) < 2:
        raise ConversionError(f"{path.name} has {len(specs)} input(s) of shape "
                              f"{', '.join(str(shapes[s.name]) for s in specs)}: the PyTorch techniques take a "
                              "model with one batched input (batch, channels, ...); an input without a batch "
                              "dimension cannot be trained in batches")
    dynamic = {s.name: [i for i, d in enumerate(s.shape) if not isinstance(d, int)] for s in specs}
    try:
        slim = onnxslim.slim(_fixed(model, shapes))
    except Exception as exc:   # onnxslim raises what its passes raise
        raise ConversionError(f"onnxslim could not simplify {path.name}: {type(exc).__name__}: {str(exc)[:200]}") \
            from None
    try:
        module = onnx2torch.convert(slim)
    except NotImplementedError as exc:
        raise ConversionError(f"{path.name} has an op the ONNX-to-PyTorch converter (onnx2torch) lacks: "
                              f"{_unsupported(exc)}; the post-training techniques (int8, fp16, fuse, rewrite) "
                              "still apply") from None
    except Exception as exc:
        raise ConversionError(f"onnx2torch could not convert {path.name}: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from None
    module.eval()
    converted = ConvertedModel(module, path, [s.name for s in specs], [o.name for o in model.graph.output],
                               shapes, dynamic)
    feeds = (check_feeds or [_image_like(specs, shapes)])[:8]
    session = reference_session(path)
    converted.max_error = max(output_error(converted, feed, reference=session.run(None, feed)) for feed in feeds)
    if not converted.max_error <= MAX_RELATIVE_ERROR:
        raise ConversionError(f"the PyTorch module converted from {path.name} differs from ONNX Runtime by "
                              f"{converted.max_error:.2e} of the output range (at most {MAX_RELATIVE_ERROR:.0e} "
                              "is accepted), so it is not the same model")
    return converted


def run_module(module, feed: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    """The module's outputs on one feed, as numpy arrays."""
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(feed[name])))
    return [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]


def reference_session(path: Path):
    """ONNX Runtime on the original file: what the converted module is checked against."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def output_error(converted: ConvertedModel, feed: dict[str, np.ndarray], module=None, reference=None) -> float:
    """max |module - reference| / range of the reference output, over all outputs; the module defaults to
    the converted one and the reference to ONNX Runtime running the original file."""
    if reference is None:
        reference = reference_session(converted.path).run(None, feed)
    got = run_module(module if module is not None else converted.module, feed, converted.input_names[0])
    if len(got) != len(reference):
        return float("inf")
    worst = 0.0
    for a, b in zip(got, reference):
        if a.shape != b.shape:
            return float("inf")
        span = max(float(b.max() - b.min()), MIN_SPAN)
        worst = max(worst, float(np.abs(a - b).max()) / span)
    return worst
