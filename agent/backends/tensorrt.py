"""TensorRT backend for Jetson and NVIDIA GPUs: builds an engine from the ONNX model on the device (FP16
where the GPU has fast FP16; INT8 when the model carries Q/DQ nodes, i.e. explicit quantization), caches
it by model digest, TensorRT version and settings, times execute_async_v3, and reads per-layer times
with TensorRT's IProfiler. Where only `trtexec` is installed, the same job runs through trtexec and its
--exportTimes / --exportProfile JSON is parsed.

NOT YET VERIFIED ON HARDWARE: TensorRT cannot be installed on the machines that build edgefarm. The
parsers (agent/backends/trtexec.py) are tested on files in the format trtexec writes, and the wiring with TensorRT absent."""

from __future__ import annotations

import hashlib
import shutil
import statistics
from pathlib import Path

import numpy as np

from agent.backends import Backend, InputSpec
from agent.backends.trtexec import engine_key, gpu_name, has_qdq, run_trtexec, trt_row, trt_version
from agent.errors import JobError
from agent.trace import synthesised_trace

try:  # imported at module load so that an agent without TensorRT lists it as unavailable
    import tensorrt as trt
except ImportError:  # pragma: no cover - depends on the device
    trt = None
    if not shutil.which("trtexec"):
        raise


class TensorRTBackend(Backend):
    """Engine built (or taken from the cache) at load; run() copies inputs to the GPU, executes, copies back."""

    name = "tensorrt"

    def __init__(self) -> None:
        self.engine = self.context = None
        self.precision = "fp32"
        self.layer_times: dict[str, list[float]] = {}

    @staticmethod
    def version() -> str:
        return trt_version()

    @staticmethod
    def providers() -> list[str]:
        return ["tensorrt-python" if trt is not None else "trtexec"]

    @property
    def measures_itself(self) -> bool:
        """Without TensorRT's Python package the job runs through trtexec (see run_trtexec)."""
        return trt is None

    def measure_itself(self, job: dict, work: Path, profile: bool) -> dict:
        """The whole benchmark/profile through trtexec."""
        precision = "int8" if has_qdq(self.path) else "fp16"
        return run_trtexec(self.path, precision, max(int(job["min_iterations"]), 10), work, profile)

    def load(self, path: Path, threads: int, profile_dir: Path | None = None) -> None:
        self.path = Path(path)
        if trt is None:
            return       # trtexec mode: trtexec builds (or loads the cached) engine itself
        from cuda.bindings import runtime as cudart  # cuda-python, shipped with JetPack's Python stack

        self.cudart = cudart
        logger = trt.Logger(trt.Logger.WARNING)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        builder = trt.Builder(logger)
        self.precision = "int8" if has_qdq(path) else ("fp16" if builder.platform_has_fast_fp16 else "fp32")
        cache = Path(path).parent / "trt-engines"
        cache.mkdir(exist_ok=True)
        engine_path = cache / f"{engine_key(digest, self.precision, trt.__version__, gpu_name())}.engine"
        runtime = trt.Runtime(logger)
        if engine_path.exists():
            self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        else:
            network = builder.create_network(0)
            parser = trt.OnnxParser(network, logger)
            if not parser.parse(Path(path).read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise JobError("UNSUPPORTED_OP", f"TensorRT's ONNX parser refused the model: {errors[:400]}")
            config = builder.create_builder_config()
            if self.precision in ("fp16", "int8"):
                config.set_flag(trt.BuilderFlag.FP16)
            if self.precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
            if profile_dir is not None:
                config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise JobError("INVALID_MODEL", "TensorRT could not build an engine for this model (see the agent log)")
            tmp = engine_path.with_suffix(".part")
            tmp.write_bytes(bytes(plan))
            tmp.rename(engine_path)
            self.engine = runtime.deserialize_cuda_engine(bytes(plan))
        self.context = self.engine.create_execution_context()
        if profile_dir is not None:
            self.context.profiler = _Profiler(self.layer_times)
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names_ = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.buffers: dict[str, tuple[int, int]] = {}
        _, self.stream = cudart.cudaStreamCreate()

    def inputs(self) -> list[InputSpec]:
        return [InputSpec(n, np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))),
                          [d if d >= 0 else None for d in self.engine.get_tensor_shape(n)]) for n in self.input_names]

    def output_names(self) -> list[str]:
        return list(self.output_names_)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cudart.cudaFree(ptr)
            _, ptr = self.cudart.cudaMalloc(nbytes)
            self.buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            value = np.ascontiguousarray(feeds[name])
            self.context.set_input_shape(name, value.shape)
            ptr = self._buffer(name, value.nbytes)
            cudart.cudaMemcpyAsync(ptr, value.ctypes.data, value.nbytes, h2d, self.stream)
            self.context.set_tensor_address(name, ptr)
        outputs = []
        for name in self.output_names_:
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_tensor_address(name, self._buffer(name, max(out.nbytes, 1)))
            outputs.append(out)
        self.context.execute_async_v3(self.stream)
        for name, out in zip(self.output_names_, outputs):
            cudart.cudaMemcpyAsync(out.ctypes.data, self.buffers[name][0], out.nbytes, d2h, self.stream)
        cudart.cudaStreamSynchronize(self.stream)
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


