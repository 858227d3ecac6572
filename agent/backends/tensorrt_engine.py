"""Building (or loading the cached) TensorRT engine, the same way on every TensorRT version the agent
supports: 8.5 and 8.6 (JetPack 5.1, 6.0), 10.x (JetPack 6.1/6.2, x86 wheels) and 11.x. Every function
takes the `tensorrt` module as its first argument, so the test drives this code against each version's real
Python bindings (tests/agent/trt_surface.py).

What differs by version (from the bindings' pyCore.cpp / NvInfer.h on release/8.5, 8.6, 10.3 and main):
- 8.x: the ONNX parser needs an explicit-batch network (`EXPLICIT_BATCH`); 10 makes it the default and
  deprecates the flag; 11 removes it.
- 11: no `platform_has_fast_fp16`, no `BuilderFlag.FP16` / `INT8`: networks are strongly typed, so an
  engine runs at the precision the ONNX model carries ("typed").
- name-based I/O (`num_io_tensors`, `get_tensor_name`, `set_input_shape`, `execute_async_v3`) exists from
  8.5: older TensorRT is refused with one sentence."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from agent.backends.trtexec import engine_key, has_qdq, major
from agent.errors import JobError

MIN_VERSION = (8, 5)


@dataclass
class EngineRequest:
    """What an engine is built for: the model, the shapes of its dynamic inputs, profiling or not."""

    model_path: Path
    device: str                                   # the GPU's name: an engine is valid on that GPU only
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    profiling: bool = False                       # DETAILED verbosity: a separate engine (slower enqueue)


@dataclass
class Engine:
    """A deserialized engine with what was decided on the way."""

    engine: object
    precision: str            # fp32 | fp16 | int8 | typed (TensorRT >= 11: the model's own types)
    path: Path                # the cached plan
    shapes: dict[str, list[int]]


def check_version(trt) -> None:
    """Refuse TensorRT older than 8.5 (no name-based I/O) with what to do."""
    parts = [int(p) for p in trt.__version__.split(".")[:2] if p.isdigit()]
    if tuple(parts) < MIN_VERSION:
        raise JobError("BACKEND_UNAVAILABLE", f"TensorRT {trt.__version__} is older than 8.5, which the agent "
                                              "needs (name-based I/O); upgrade JetPack to 5.1 or later")


def network_flags(trt) -> int:
    """create_network's flags: explicit batch on 8.x (the ONNX parser rejects implicit batch), none later."""
    if major(trt.__version__) < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def choose_precision(trt, builder, model: bytes) -> str:
    """int8 for a model with Q/DQ nodes; fp16 where the GPU has fast FP16; 'typed' on TensorRT >= 11."""
    if major(trt.__version__) >= 11:
        return "typed"
    if has_qdq(model):
        return "int8"
    return "fp16" if builder.platform_has_fast_fp16 else "fp32"


def dynamic_shapes(trt, network, given: dict[str, list[int]]) -> dict[str, list[int]]:
    """The shape of every input with a dynamic dimension, from --input-shape; one sentence when missing."""
    shapes, missing = {}, []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if all(d >= 0 for d in dims):
            continue
        want = given.get(tensor.name)
        if want is None:
            missing.append(f"'{tensor.name}' {dims}")
            continue
        if len(want) != len(dims) or any(d >= 0 and d != w for d, w in zip(dims, want)):
            raise JobError("INVALID_INPUT", f"--input-shape {tensor.name}={'x'.join(map(str, want))} does not fit "
                                            f"the model's input {dims} (-1 marks a dynamic dimension)")
        shapes[tensor.name] = [int(w) for w in want]
    if missing:
        raise JobError("INVALID_INPUT", f"TensorRT needs a shape for each dynamic input: {', '.join(missing)}; "
                                        "pass --input-shape NAME=1x3x640x640 (one per input)")
    return shapes


def configure(trt, builder, network, precision: str, request: EngineRequest) -> tuple[object, dict]:
    """The builder config: precision flags (before 11), one optimization profile fixing the dynamic inputs
    at their --input-shape, and DETAILED profiling verbosity for a profile's engine."""
    config = builder.create_builder_config()
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    shapes = dynamic_shapes(trt, network, request.input_shapes)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, dims in shapes.items():
            profile.set_shape(name, dims, dims, dims)
        config.add_optimization_profile(profile)
    config.profiling_verbosity = (trt.ProfilingVerbosity.DETAILED if request.profiling
                                  else trt.ProfilingVerbosity.LAYER_NAMES_ONLY)
    return config, shapes


def parse_onnx(trt, builder, logger, model: bytes):
    """The network from the ONNX model's bytes; the parser's own errors when it refuses it."""
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise JobError("UNSUPPORTED_OP", f"TensorRT {trt.__version__}'s ONNX parser refused the model: {errors[:400]}")
    return network, parser


def deserialize(trt, runtime, plan: bytes, path: Path):
    """An engine from a plan; None (a plan from another TensorRT or GPU, a truncated file) is an error."""
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        path.unlink(missing_ok=True)
        raise JobError("INVALID_MODEL", f"TensorRT {trt.__version__} could not load the engine {path.name} "
                                        "(built by another TensorRT or GPU?); it was removed, run the job again")
    return engine


def build_or_load(trt, logger, request: EngineRequest) -> Engine:
    """The engine for `request`: from the cache next to the model (keyed by model digest, precision,
    TensorRT version, GPU, profiling verbosity and shapes), else built and cached."""
    check_version(trt)
    model = Path(request.model_path).read_bytes()     # read once: parsed, checked for Q/DQ and hashed
    builder = trt.Builder(logger)
    network, _parser = parse_onnx(trt, builder, logger, model)
    precision = choose_precision(trt, builder, model)
    config, shapes = configure(trt, builder, network, precision, request)
    digest = hashlib.sha256(model).hexdigest()
    verbosity = "detailed" if request.profiling else "default"
    cache = Path(request.model_path).parent / "trt-engines"
    cache.mkdir(exist_ok=True)
    path = cache / f"{engine_key(digest, precision, trt.__version__, request.device, verbosity, shapes)}.engine"
    runtime = trt.Runtime(logger)
    if path.exists():
        return Engine(deserialize(trt, runtime, path.read_bytes(), path), precision, path, shapes)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise JobError("INVALID_MODEL", f"TensorRT {trt.__version__} could not build an engine for this model "
                                        "(see the agent log)")
    data = bytes(plan)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.rename(path)
    return Engine(deserialize(trt, runtime, data, path), precision, path, shapes)


def io_tensors(trt, engine) -> tuple[list[str], list[str]]:
    """(input names, output names) through the name-based I/O API (8.5 and later)."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    return inputs, [n for n in names if n not in inputs]
