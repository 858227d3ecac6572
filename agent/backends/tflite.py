"""LiteRT (TFLite) backend via ai-edge-litert: the interpreter with the XNNPACK delegate (LiteRT's default
CPU delegate) and explicit threads. LiteRT's Python API has no op profiler, so the per-op profile times
each operator alone: the model is cut into one-op models (an operator with the constant weights it reads,
including their DEQUANTIZE producers), each timed like the whole model, less the fixed cost of one
invoke (measured on a model with no operator)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # absent: the backend is unavailable

from agent.backends import Backend, InputSpec
from agent.errors import JobError
from agent.trace import synthesised_trace

TFLITE_MAGIC = b"TFL3"
PROFILE_RUNS = 30


def _interpreter(model: bytes | str, threads: int):
    kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": model}
    # AUTO = the builtin kernels with the default delegates, i.e. XNNPACK on CPU
    return Interpreter(**kwargs, num_threads=max(int(threads), 1),
                       experimental_op_resolver_type=OpResolverType.AUTO)


def check_tflite(path: Path) -> None:
    """A .tflite flatbuffer carries 'TFL3' at bytes 4-8; anything else is a clear INVALID_MODEL."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
        raise JobError("INVALID_MODEL", "the file is not a TFLite/LiteRT model (no 'TFL3' identifier): it may be "
                                        "truncated or another format; convert it again or copy it again")


class LiteRTBackend(Backend):
    """One interpreter per job; run() sets the inputs, invokes, and reads the outputs."""

    name = "tflite"

    def __init__(self) -> None:
        self.interp = None
        self.path: Path | None = None
        self.threads = 1
        self.profiled: tuple[list[dict], float] | None = None

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("ai-edge-litert")

    @staticmethod
    def providers() -> list[str]:
        return ["xnnpack", "builtin"]

    def load(self, path: Path, threads: int, profile_dir: Path | None = None,
             input_shapes: dict[str, list[int]] | None = None) -> None:
        check_tflite(path)
        self.path, self.threads = Path(path), threads
        try:
            self.interp = _interpreter(str(path), threads)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            text = str(exc)
            if "custom op" in text.lower() or "didn't find op" in text.lower():
                raise JobError("UNSUPPORTED_OP", f"LiteRT cannot run this model: {text.strip()[:300]}; register the "
                                                 "custom op or convert without it") from exc
            raise JobError("INVALID_MODEL", f"LiteRT could not load the model: {text.strip()[:300]}") from exc
        self._inputs = self.interp.get_input_details()
        self._outputs = self.interp.get_output_details()

    def inputs(self) -> list[InputSpec]:
        return [InputSpec(d["name"], np.dtype(d["dtype"]),
                          [int(x) if x > 0 else None for x in d.get("shape_signature", d["shape"])])
                for d in self._inputs]

    def output_names(self) -> list[str]:
        return [d["name"] for d in self._outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        interp = self.interp
        for d in self._inputs:
            value = feeds[d["name"]]
            if tuple(value.shape) != tuple(d["shape"]):
                interp.resize_tensor_input(d["index"], list(value.shape))
                interp.allocate_tensors()
                self._inputs = interp.get_input_details()
                self._outputs = interp.get_output_details()
                return self.run(feeds)
            interp.set_tensor(d["index"], value)
        interp.invoke()
        return [interp.get_tensor(d["index"]) for d in self._outputs]

    def layer_profile(self, skip_runs: int) -> tuple[list[dict], float, int]:
        rows = op_profile(self.path.read_bytes(), self.threads)
        total = _time_invokes(self.interp, PROFILE_RUNS)
        self.profiled = rows, total
        return rows, total, PROFILE_RUNS

    def profile_trace(self, skip_runs: int, max_runs: int) -> dict | None:
        """One synthesised run: each operator's time alone (see the module docstring), in execution order;
        the whole model's median invoke is in otherData (the operators need not add up to it)."""
        if self.profiled is None:
            return None
        rows, total = self.profiled
        return synthesised_trace([[(r, r["time_ms"]) for r in rows]], {
            "backend": self.name, "backend_version": self.version(), "model_median_ms": total,
            "runs_profiled": PROFILE_RUNS,
            "note": "LiteRT has no op profiler here: one representative run, each operator timed alone"})


def _time_invokes(interp, runs: int) -> float:
    """Median ms of one invoke (after two warm-up invokes)."""
    for _ in range(2):
        interp.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        interp.invoke()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1e6


def _time_model(data: bytes, threads: int, runs: int) -> float:
    interp = _interpreter(data, threads)
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        shape, dtype = d["shape"], np.dtype(d["dtype"])
        value = rng.random(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
        interp.set_tensor(d["index"], value)
    return _time_invokes(interp, runs)


def op_profile(data: bytes, threads: int, runs: int = PROFILE_RUNS) -> list[dict]:
    """Per-operator rows of subgraph 0, each operator timed alone (see the module docstring)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(data))
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    names = [fu.opcode_to_name(model, op.opcodeIndex) or "CUSTOM" for op in ops]
    producer = {t: i for i, op in enumerate(ops) for t in op.outputs}

    def constant(t: int) -> bool:
        buf = model.buffers[sg.tensors[t].buffer]
        return buf.data is not None and len(buf.data) > 0 or bool(getattr(buf, "size", 0))

    def weight_chain(t: int) -> list[int] | None:
        """The DEQUANTIZE ops that turn a constant into this tensor, or None if it is computed."""
        if constant(t):
            return []
        i = producer.get(t)
        if i is None or names[i] != "DEQUANTIZE" or not all(constant(x) for x in ops[i].inputs if x >= 0):
            return None
        return [i]

    saved = (sg.operators, sg.inputs, sg.outputs)
    rows = []
    try:
        sg.operators, sg.inputs, sg.outputs = [], [saved[1][0]], [saved[1][0]]
        overhead = _time_model(bytes(fu.convert_object_to_bytearray(model)), threads, runs)
        for i, op in enumerate(ops):
            if names[i] == "DEQUANTIZE" and weight_chain(op.outputs[0]) == [i]:
                continue   # constant weights: folded at load, timed with their consumer
            chains = {t: weight_chain(t) for t in op.inputs if t >= 0}
            feeds = [t for t, chain in chains.items() if chain is None]
            sg.operators = [ops[j] for chain in chains.values() if chain for j in chain] + [op]
            sg.inputs, sg.outputs = feeds, list(op.outputs)
            ms = _time_model(bytes(fu.convert_object_to_bytearray(model)), threads, runs)
            t_out = sg.tensors[op.outputs[0]]
            rows.append({"name": (t_out.name.decode() if isinstance(t_out.name, bytes) else str(t_out.name))
                         or f"op{i}", "op_type": names[i], "time_ms": max(ms - overhead, 0.0),
                         "input_shapes": [_shape(sg, t) for t in op.inputs if t >= 0],
                         "output_shapes": [_shape(sg, t) for t in op.outputs],
                         "memory_bytes": 0, "provider": "xnnpack"})
    finally:
        sg.operators, sg.inputs, sg.outputs = saved
    total = sum(r["time_ms"] for r in rows) or 1.0
    for r in rows:
        r["percent"] = 100.0 * r["time_ms"] / total
    return rows


_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


def _shape(sg, t: int) -> str:
    tensor = sg.tensors[t]
    dims = ",".join(str(int(d)) for d in (tensor.shape if tensor.shape is not None else []))
    return f"{_TYPES.get(tensor.type, 'tensor')}[{dims}]"
