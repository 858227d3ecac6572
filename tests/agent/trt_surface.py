"""Drive agent/backends/tensorrt_engine.py against one TensorRT version's real Python bindings, without a GPU.

Run as `python trt_surface.py BINDINGS_DIR` with LD_LIBRARY_PATH holding stand-ins for libnvinfer,
libnvonnxparser and libnvinfer_plugin (tests/agent/test_tensorrt_api.py compiles them: the bindings only
need their nine entry points to load). Nothing here calls into TensorRT: every object the engine code
touches is a `Checked` stand-in for the real binding class, which
- refuses an attribute, method, property or enum member that the real class does not have in that version,
- refuses to set a property that has no setter,
- answers a call with a stand-in of the return type that the binding's own signature (pybind11's
  docstring) declares, or with a scenario value.
It prints JSON: the version, the calls made, what was missing, and the engine's decisions."""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
from pathlib import Path

MISSING: list[str] = []
CALLS: list[str] = []
_RETURN = re.compile(r"->\s*([\w.:]+)")


class Missing(AttributeError):
    pass


def _record_missing(what: str) -> None:
    MISSING.append(what)
    raise Missing(what)


class Checked:
    """An instance of real binding class `cls` whose every use is checked against that class."""

    def __init__(self, module, cls, scenario: dict) -> None:
        object.__setattr__(self, "_m", module)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_s", scenario)

    def _key(self, name: str) -> str:
        return f"{self._cls.__name__}.{name}"

    def __getattr__(self, name: str):
        real = getattr(self._cls, name, None)
        if real is None:
            _record_missing(self._key(name))
        key = self._key(name)
        if isinstance(real, property):
            CALLS.append(key)
            return self._value(key, real.fget.__doc__, ())
        if callable(real):
            def call(*args, **kwargs):
                CALLS.append(f"{key}({', '.join(map(_short, args))})")
                return self._value(key, real.__doc__, args)
            return call
        return real

    def __setattr__(self, name: str, value) -> None:
        real = getattr(self._cls, name, None)
        if not isinstance(real, property) or real.fset is None:
            _record_missing(f"{self._key(name)} (settable)")
        CALLS.append(f"{self._key(name)} = {_short(value)}")

    def __bytes__(self) -> bytes:
        return b"serialized-plan"

    def _value(self, key: str, doc: str | None, args: tuple):
        if key in self._s:
            value = self._s[key]
            return value(*args) if callable(value) else value
        return returned(self._m, doc, self._s)


def _short(value) -> str:
    if isinstance(value, Checked):
        return value._cls.__name__
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value) if not hasattr(value, "name") else str(value)


def returned(module, doc: str | None, scenario: dict):
    """A stand-in for what a binding returns, from the first `-> TYPE` of its signature."""
    m = _RETURN.search(doc or "")
    kind = m.group(1).rsplit(".", 1)[-1] if m else "None"
    simple = {"None": None, "bool": True, "int": 0, "float": 0.0, "str": "", "IHostMemory": Checked(
        module, module.IHostMemory, scenario)}
    if kind in simple:
        return simple[kind]
    cls = getattr(module, kind, None)
    if cls is None:
        raise AssertionError(f"unknown return type {kind!r} in {doc!r}")
    members = getattr(cls, "__members__", None)
    if members:
        return next(iter(members.values()))
    return Checked(module, cls, scenario)


class CheckedModule:
    """The `tensorrt` module as the engine code sees it: classes become Checked factories."""

    def __init__(self, module, scenario: dict) -> None:
        self._m, self._s = module, scenario
        self.__version__ = module.__version__

    def __getattr__(self, name: str):
        real = getattr(self._m, name, None)
        if real is None:
            _record_missing(name)
        if isinstance(real, type) and not getattr(real, "__members__", None):
            return CheckedClass(self._m, real, self._s)
        return real


class CheckedClass:
    """A binding class: calling it makes a Checked instance; its attributes (enum members) are real."""

    def __init__(self, module, cls, scenario: dict) -> None:
        self._m, self._cls, self._s = module, cls, scenario

    def __call__(self, *args):
        CALLS.append(f"{self._cls.__name__}({', '.join(map(_short, args))})")
        return Checked(self._m, self._cls, self._s)

    def __getattr__(self, name: str):
        real = getattr(self._cls, name, None)
        if real is None:
            _record_missing(f"{self._cls.__name__}.{name}")
        return real


def scenario(module) -> dict:
    """One dynamic-batch input 'images' [-1, 3, 32, 32] and one output, as a YOLO export has."""
    mode = module.TensorIOMode
    names = ["images", "output0"]
    return {"INetworkDefinition.num_inputs": 1,
            "INetworkDefinition.get_input": lambda i: Checked(module, module.ITensor, {
                "ITensor.name": "images", "ITensor.shape": (-1, 3, 32, 32)}),
            "OnnxParser.parse": True, "OnnxParser.num_errors": 0,
            "ICudaEngine.num_io_tensors": 2, "ICudaEngine.get_tensor_name": lambda i: names[i],
            "ICudaEngine.get_tensor_mode": lambda n: mode.INPUT if n == "images" else mode.OUTPUT}


# what the version differences turn on: the test checks that the binding itself says so
PROBES = ("Builder.platform_has_fast_fp16", "BuilderFlag.FP16", "BuilderFlag.INT8",
          "NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "IExecutionContext.execute_async_v3",
          "ICudaEngine.num_io_tensors", "IExecutionContext.execute_v2", "ICudaEngine.num_bindings")


def _has(module, dotted: str) -> bool:
    owner, _, name = dotted.partition(".")
    return hasattr(getattr(module, owner), name)


def main(bindings: str) -> None:
    sys.path.insert(0, bindings)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    real = importlib.import_module("tensorrt_bindings")
    from agent.backends import tensorrt_engine as te
    from agent.errors import JobError

    trt = CheckedModule(real, scenario(real))
    out = {"version": real.__version__, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "m.onnx"
        model.write_bytes(b"onnx model without quantization")
        logger = trt.Logger(trt.Logger.WARNING)
        for profiling in (False, True):
            CALLS.clear()
            request = te.EngineRequest(model, "gpu", {"images": [1, 3, 32, 32]}, profiling)
            try:
                built = te.build_or_load(trt, logger, request)
                inputs, outputs = te.io_tensors(trt, built.engine)
                ctx = built.engine.create_execution_context()
                ctx.set_input_shape("images", (1, 3, 32, 32))
                ctx.set_tensor_address("images", 0)
                ctx.execute_async_v3(0)
                ctx.get_tensor_shape("output0")
                trt.nptype(trt.DataType.FLOAT)
                if profiling:
                    trt.IProfiler.report_layer_time   # the profiler subclass overrides this
                    ctx.profiler = None
                run = {"precision": built.precision, "shapes": built.shapes, "io": [inputs, outputs],
                       "flags": te.network_flags(trt), "engine": built.path.name}
            except Missing:
                run = {"error": "missing API"}
            except JobError as exc:
                run = {"error": exc.message}
            run["calls"] = list(CALLS)
            out["runs"]["profile" if profiling else "benchmark"] = run
            try:
                te.dynamic_shapes(trt, trt.Builder(logger).create_network(0), {})
            except JobError as exc:
                out["no_shape_error"] = exc.message
    out["missing"] = sorted(set(MISSING))
    out["has"] = {name: _has(real, name) for name in PROBES}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
