"""TensorRT backend for Jetson and NVIDIA GPUs: builds an engine from the ONNX model on the device
(agent/backends/tensorrt_engine.py: the same on TensorRT 8.5, 8.6, 10.x and 11.x), caches it, times
execute_async_v3 with device buffers from the CUDA runtime (agent/backends/cuda_runtime.py: ctypes, no
binding to install), and reads per-layer times with TensorRT's IProfiler. Where the Python bindings cannot be
imported into the agent's Python (JetPack 5 ships them for Python 3.8 only) but trtexec is there, the same
job runs through trtexec (agent/backends/trtexec.py).

Verified without a GPU: the code path against each version's real bindings (tests/agent/trt_surface.py),
the CUDA runtime's return codes against the real libcudart, trtexec's command and parsers. On a GPU:
scripts/gpu_check.sh (docs/agent.md's support matrix says what ran where)."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from agent.backends import Backend, InputSpec
from agent.backends.cuda_runtime import D2H, H2D, CudaRuntime
from agent.backends.tensorrt_engine import EngineRequest, build_or_load, io_tensors
from agent.backends.trtexec import find_trtexec, gpu_name, has_qdq, run_trtexec, trt_row, trtexec_version
from agent.errors import JobError
from agent.trace import synthesised_trace

try:  # imported at module load so that an agent without TensorRT lists it as unavailable
    import tensorrt as trt
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the device
    trt = None
    IMPORT_ERROR = str(exc)
    if find_trtexec() is None:
        raise


class TensorRTBackend(Backend):
    """Engine built (or taken from the cache) at load; run() copies inputs to the GPU, executes, copies back."""

    name = "tensorrt"

    def __init__(self) -> None:
        self.engine = self.context = None
        self.precision = "fp32"
        self.layer_times: dict[str, list[float]] = {}
        self.input_shapes: dict[str, list[int]] = {}

    @staticmethod
    def version() -> str:
        return trt.__version__ if trt is not None else trtexec_version()

    @staticmethod
    def providers() -> list[str]:
        """'tensorrt-python', or 'trtexec' with why the bindings are not used (farmctl devices shows it)."""
        if trt is not None:
            return ["tensorrt-python"]
        return ["trtexec", f"no TensorRT Python bindings in this Python: {IMPORT_ERROR}"]

    @property
    def measures_itself(self) -> bool:
        """Without TensorRT's Python package the job runs through trtexec (see run_trtexec)."""
        return trt is None

    def measure_itself(self, job: dict, work: Path, profile: bool) -> dict:
        """The whole benchmark/profile through trtexec."""
        precision = "int8" if has_qdq(self.path) else "fp16"
        return run_trtexec(self.path, precision, max(int(job["min_iterations"]), 10), work, profile,
                           self.input_shapes)

    def load(self, path: Path, threads: int, profile_dir: Path | None = None,
             input_shapes: dict[str, list[int]] | None = None) -> None:
        self.path = Path(path)
        self.input_shapes = dict(input_shapes or {})
        if trt is None:
            return       # trtexec mode: trtexec builds (or loads the cached) engine itself
        self.cuda = CudaRuntime()
        built = build_or_load(trt, trt.Logger(trt.Logger.WARNING),
                              EngineRequest(self.path, gpu_name(), self.input_shapes, profile_dir is not None))
        self.engine, self.precision = built.engine, built.precision
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise JobError("OUT_OF_MEMORY", "TensorRT could not create an execution context (GPU memory?)")
        if profile_dir is not None:
            self.context.profiler = _Profiler(self.layer_times)
        self.input_names, self.output_names_ = io_tensors(trt, self.engine)
        self.fixed = built.shapes
        self.buffers: dict[str, tuple[int, int]] = {}
        self.stream = self.cuda.stream_create()

    def inputs(self) -> list[InputSpec]:
        specs = []
        for n in self.input_names:
            dims = self.fixed.get(n) or [d if d >= 0 else None for d in self.engine.get_tensor_shape(n)]
            specs.append(InputSpec(n, np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))), list(dims)))
        return specs

    def output_names(self) -> list[str]:
        return list(self.output_names_)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr = self.cuda.malloc(nbytes)
            self.buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        cuda = self.cuda
        for name in self.input_names:
            value = np.ascontiguousarray(feeds[name])
            self.context.set_input_shape(name, value.shape)
            ptr = self._buffer(name, value.nbytes)
            cuda.copy_async(ptr, value.ctypes.data, value.nbytes, H2D, self.stream)
            self.context.set_tensor_address(name, ptr)
        outputs = []
        for name in self.output_names_:
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_tensor_address(name, self._buffer(name, max(out.nbytes, 1)))
            outputs.append(out)
        if not self.context.execute_async_v3(self.stream):
            raise JobError("INFERENCE_FAILED", "TensorRT's execute_async_v3 failed (see the agent log)")
        for name, out in zip(self.output_names_, outputs):
            cuda.copy_async(out.ctypes.data, self.buffers[name][0], out.nbytes, D2H, self.stream)
        cuda.synchronize(self.stream)
        return outputs

    def layer_profile(self, skip_runs: int) -> tuple[list[dict], float, int]:
        rows = []
        for name, times in self.layer_times.items():
            kept = times[skip_runs:] or times
            rows.append({**trt_row(name), "time_ms": statistics.fmean(kept)})
        total = sum(r["time_ms"] for r in rows)
        for r in rows:
            r["percent"] = 100.0 * r["time_ms"] / (total or 1.0)
        runs = max((len(t) for t in self.layer_times.values()), default=0) - skip_runs
        return rows, total, max(runs, 0)

    def profile_trace(self, skip_runs: int, max_runs: int) -> dict | None:
        """IProfiler's per-execution layer times, one synthesised run per measured execution."""
        if not self.layer_times:
            return None
        measured = max(len(t) for t in self.layer_times.values()) - skip_runs
        runs = [[(trt_row(name), times[skip_runs + j]) for name, times in self.layer_times.items()
                 if skip_runs + j < len(times)] for j in range(min(max(measured, 0), max_runs))]
        return synthesised_trace(runs, {"backend": self.name, "backend_version": self.version(),
                                        "runs_profiled": max(measured, 0), "precision": self.precision})


if trt is not None:
    class _Profiler(trt.IProfiler):
        """Collects TensorRT's per-layer times (ms) of every execution."""

        def __init__(self, sink: dict[str, list[float]]) -> None:
            trt.IProfiler.__init__(self)
            self.sink = sink

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.sink.setdefault(layer_name, []).append(ms)
