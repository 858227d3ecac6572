"""Loading, checking and saving the ONNX models every ONNX-level technique works on."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from core.inputs import InputSpec
from optimizers.errors import ModelError

log = logging.getLogger(__name__)

ModelLike = Union[str, Path, "onnx.ModelProto", "torch.nn.Module"]  # noqa: F821
FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto values)


@dataclass
class LoadedModel:
    """A parsed model, where it came from, and the sha256 of its serialized bytes."""

    proto: "onnx.ModelProto"  # noqa: F821
    path: Path | None
    digest: str
    size_bytes: int
    exported: str = ""   # how a PyTorch module given instead of a file was exported (said in records)

    @property
    def name(self) -> str:
        return self.path.stem if self.path else (self.proto.graph.name or "model")

    def note_export(self, record) -> None:
        """Say in a technique's record that the model was a PyTorch module exported first."""
        if self.exported:
            record.notes.append(self.exported)


def is_torch_module(model) -> bool:
    return callable(getattr(model, "named_modules", None)) and callable(getattr(model, "forward", None))


def load_model(model: ModelLike, data=None, example_input=None) -> LoadedModel:
    """Parse a path or ModelProto, refusing files that are not ONNX or keep external weights. A PyTorch
    module is exported once (its example input found from `example_input`, the data or the model) and the
    record says so."""
    import onnx
    from google.protobuf.message import DecodeError

    if is_torch_module(model):
        return _exported(model, data, example_input)
    if isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
        proto, path = model, None
    else:
        if not isinstance(model, (str, Path)):
            raise ModelError(f"the model is a {type(model).__name__}; give the path of an .onnx file, an "
                             "onnx.ModelProto or a PyTorch module")
        path = Path(model)
        if not path.exists():
            raise ModelError(f"model file '{path}' does not exist; give the path of an .onnx file")
        if not path.is_file():
            raise ModelError(f"'{path}' is not a file; give the path of an .onnx model")
        data = path.read_bytes()
        try:
            proto = onnx.load_from_string(data)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise ModelError(f"'{path}' is not an ONNX model ({type(exc).__name__}: {str(exc)[:120]}); "
                             "give an .onnx file (convert other formats to ONNX first)") from None
    if not proto.graph.node:
        where = f"'{path}'" if path else "the model"
        raise ModelError(f"{where} holds no ONNX graph (no nodes); is it really an ONNX model?")
    external = [i.name for i in proto.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelError(f"{len(external)} weights (e.g. '{external[0]}') are in an external-data file; "
                         "save the model as one file: onnx.save(model, path, save_as_external_data=False)")
    return LoadedModel(proto, path, hashlib.sha256(data).hexdigest(), len(data))


def _exported(module, data, example_input) -> LoadedModel:
    """A PyTorch module as a LoadedModel: exported to a single-file ONNX model in a temporary folder."""
    import tempfile

    import onnx

    from optimizers.pytorch.helpers import example_for, export_onnx

    example = example_for(module, None, example_input, _inputs_of(data))
    with tempfile.TemporaryDirectory(prefix="edgefarm-export-") as tmp:
        path = export_onnx(module, Path(tmp) / "model.onnx", example_input=example)
        raw = path.read_bytes()
    proto = onnx.load_from_string(raw)
    proto.graph.name = type(module).__name__
    how = (f"the PyTorch {type(module).__name__} was exported to ONNX first (opset 17, input 'input' "
           f"{list(example.shape)}, output 'logits')")
    return LoadedModel(proto, None, hashlib.sha256(raw).hexdigest(), len(raw), how)


def _inputs_of(data):
    """Calibration/evaluation data as the first-sample finder takes them (arrays, .npz, feed dicts)."""
    if isinstance(data, (str, Path)) and str(data).endswith(".npz"):
        with np.load(data) as z:
            return z[z.files[0]][:1]
    if isinstance(data, dict) and data:
        return np.asarray(next(iter(data.values())))
    return data if not isinstance(data, (str, Path)) else None


def opset_version(model) -> int:
    """The default-domain opset the model imports."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 1


def upgrade_opset(model, target: int):
    """Convert a model to at least `target` (per-channel QDQ needs 13); returns the model unchanged if newer."""
    from onnx import version_converter

    current = opset_version(model)
    if current >= target:
        return model
    log.info("converting opset %d -> %d", current, target)
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises plain RuntimeError/ValueError/onnx errors
        raise ModelError(f"the model uses opset {current} and onnx could not convert it to opset {target} "
                         f"({str(exc)[:200]}); re-export it with opset_version>={target}") from None


def float_weights(model) -> dict[str, np.ndarray]:
    """Float initializers and float Constant-node tensors, by name."""
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type in FLOAT_TYPES}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in FLOAT_TYPES:
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def require_float_weights(model, technique: str) -> None:
    """Refuse models with nothing to quantize or fuse: they hold no float weights."""
    sizes = [a.size for a in float_weights(model).values()]
    if not sizes or max(sizes) <= 1:
        raise ModelError(f"the model has no float weights ({technique} changes float weights): it may be "
                         "already quantized, or hold only integer tensors; give the float32 model")


def save_model(model, path: Path) -> tuple[str, int]:
    """Save as one file (no external data); returns (sha256, size)."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    topological_sort(model.graph)
    data = model.SerializeToString()
    if len(data) >= 2**31:
        raise ModelError("the result is over 2 GiB, which one ONNX file cannot hold")
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    onnx.checker.check_model(str(path))
    return hashlib.sha256(data).hexdigest(), len(data)


def default_output(source: LoadedModel, suffix: str, out: str | Path | None) -> Path:
    """Output path: `out` if given, else NAME.SUFFIX.onnx beside the source (or in the cwd)."""
    if out is not None:
        return Path(out)
    folder = source.path.parent if source.path else Path.cwd()
    return folder / f"{source.name}.{suffix}.onnx"


def topological_sort(graph) -> None:
    """Reorder graph.node in place so every node comes after the producers of its inputs (some
    converters append nodes at the end); subgraphs' outer-scope inputs count as available."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers = {o: n for n in graph.node for o in n.output}
    pending = list(graph.node)
    ordered = []
    while pending:
        progressed, rest = False, []
        for node in pending:
            if all(i in available or i not in producers for i in node.input):
                ordered.append(node)
                available.update(node.output)
                progressed = True
            else:
                rest.append(node)
        if not progressed:  # a cycle: leave the remainder in its original order
            ordered.extend(rest)
            break
        pending = rest
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        copies = [type(n)() for n in ordered]
        for c, n in zip(copies, ordered):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def onnx_input_specs(model) -> list[InputSpec]:
    """Inputs of an onnx ModelProto (initializers excluded), dynamic dims as names or None."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    specs = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        specs.append(InputSpec(inp.name, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)), dims))
    return specs
