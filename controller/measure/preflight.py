"""Finding and checking a model file on the controller before anything is sent to a device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import ModelError
from controller.measure.examples import EXAMPLES, example_model
from core.errors import JobError
from core.inputs import resolve_shapes
from core.paths import printable
from optimizers.graph.model import onnx_input_specs

SUPPORTED = {".onnx": "onnxruntime", ".tflite": "tflite"}


@dataclass
class ModelRef:
    """A model file, the backend that runs it, and its inputs' concrete shapes."""

    path: Path
    name: str
    backend: str
    input_shapes: dict[str, list[int]]
    model: Any = field(default=None, repr=False)  # the parsed onnx.ModelProto


def display_name(path: Path) -> str:
    """The model's name for tables, the store and the wire: its file stem, printable."""
    return printable(path.stem)


def display_path(path: Path) -> str:
    """A path as text for the store and messages, printable."""
    return printable(str(path))


def resolve_model(arg: str | None) -> Path:
    """A path, 'example:NAME', or None (the built-in MobileNetV2 example)."""
    if arg is None or arg in EXAMPLES or arg.startswith("example:"):
        name = "mobilenetv2" if arg is None else arg.removeprefix("example:")
        try:
            return example_model(name)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
    path = Path(arg)
    if not path.exists():
        raise ModelError(f"model file '{arg}' does not exist; give the path of an .onnx file "
                         f"(or omit it to use the built-in example)")
    if not path.is_file():
        raise ModelError(f"'{arg}' is not a file; give the path of an .onnx model")
    return path


def load_onnx(path: Path):
    """onnx.load with an error that says what is wrong with the file."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        raise ModelError(f"'{path}' is not a valid ONNX model ({type(exc).__name__}: {str(exc)[:200]}); "
                         "it may be truncated or another format: re-export it or copy it again") from None


def check_model(path: Path, input_shapes: dict[str, list[int]] | None = None) -> ModelRef:
    """Pre-flight: the file parses, its backend is known, and every input has a concrete shape."""
    backend = SUPPORTED.get(path.suffix.lower())
    if backend is None:
        raise ModelError(f"'{path.name}': edgefarm measures {', '.join(SUPPORTED)} models so far; "
                         "convert the model to ONNX first")
    if backend == "tflite":
        return check_tflite_model(path, input_shapes)
    model = load_onnx(path)
    if not model.graph.node:
        raise ModelError(f"'{path}' parses as protobuf but holds no ONNX graph; is it really an ONNX model?")
    external = [i.name for i in model.graph.initializer if i.data_location == i.EXTERNAL]
    if external:
        raise ModelError(
            f"'{path.name}' keeps {len(external)} weights (e.g. '{external[0]}') in a separate external-data "
            "file, and edgefarm ships one file per model: save it as one file with onnx.save(model, path, "
            "save_as_external_data=False), or export with torch.onnx.export(..., external_data=False)")
    try:
        shapes = resolve_shapes(onnx_input_specs(model), input_shapes or {})
    except JobError as exc:
        raise ModelError(f"{path.name}: {exc.message}") from None
    return ModelRef(path=path, name=display_name(path), backend=backend, input_shapes=shapes, model=model)


def check_tflite_model(path: Path, input_shapes: dict[str, list[int]] | None = None) -> ModelRef:
    """Pre-flight of a .tflite file: the flatbuffer identifier, and the inputs when LiteRT is installed here
    (otherwise the agent resolves them; a .tflite model's shapes are usually fixed)."""
    from agent.backends.tflite import check_tflite

    try:
        check_tflite(path)
    except JobError as exc:
        raise ModelError(f"'{path.name}': {exc.message}") from None
    shapes: dict[str, list[int]] = dict(input_shapes or {})
    try:
        from agent.backends.tflite import LiteRTBackend

        backend = LiteRTBackend()
        backend.load(path, 1)
        shapes = resolve_shapes(backend.inputs(), input_shapes or {})
    except ImportError:
        pass
    except JobError as exc:
        raise ModelError(f"{path.name}: {exc.message}") from None
    return ModelRef(path=path, name=display_name(path), backend="tflite", input_shapes=shapes)
