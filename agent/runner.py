"""The measured child process: `python -m agent.runner` reads one job as JSON on stdin and writes
events as JSON lines on stdout. Only the backend's run() call is inside the timed region."""

from __future__ import annotations

import base64
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from agent.backends import Backend, InputSpec, backend_class
from agent.errors import JobError, disk_full_message, is_disk_full
from agent.stats import latency_stats
from agent.telemetry import PowerMeter
from agent.trace import fit, pack, synthesised_trace
from core.inputs import make_feeds, resolve_shapes
from core.npz import save_arrays

PROGRESS_EVERY_S = 1.0
MAX_TIMES = 100_000   # per-inference times sent back with a result (the first of a longer loop)


def emit(event: str, **fields) -> None:
    """Write one event line for the agent."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def load_supplied_inputs(specs: list[InputSpec], path: Path) -> list[dict[str, np.ndarray]]:
    """Inputs sent with an EVALUATE job, checked against the model's inputs, as a list of feeds: one
    feed, or (for a model whose batch dimension is fixed at 1 and inputs stacked N deep along it) N
    feeds of one sample each."""
    with np.load(path) as data:
        supplied = {k: data[k] for k in data.files}
    missing = [s.name for s in specs if s.name not in supplied]
    if missing:
        raise JobError("INVALID_INPUT", f"the EVALUATE job lacks input(s) {', '.join(missing)}; the model's "
                                        f"inputs are: {', '.join(s.name for s in specs)}")
    for spec in specs:
        if supplied[spec.name].dtype != spec.dtype:
            raise JobError("INVALID_INPUT",
                           f"input '{spec.name}' must be {spec.dtype}, got {supplied[spec.name].dtype}")
    stacks = {len(supplied[s.name]) for s in specs if supplied[s.name].ndim}
    batch_one = all(s.shape and s.shape[0] == 1 for s in specs)
    if batch_one and len(stacks) == 1 and (n := stacks.pop()) > 1:
        samples = [{s.name: supplied[s.name][i:i + 1] for s in specs} for i in range(n)]
    else:
        samples = [{s.name: supplied[s.name] for s in specs}]
    resolve_shapes(specs, {k: list(v.shape) for k, v in samples[0].items()})
    return samples


# how runtimes say an allocation failed (ONNX Runtime's arena, C++'s operator new, LiteRT's arena) once the
# kernel's memory limit on the runner (agent/process.py: RLIMIT_DATA) refuses it
ALLOCATION_FAILED = ("Failed to allocate", "bad_alloc", "out of memory")


def _inference_error(feeds: dict, exc: Exception) -> JobError:
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
    text = str(exc).strip()
    found = next((words for words in ALLOCATION_FAILED if words in text), None)
    if found is not None:
        limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
        return JobError("OUT_OF_MEMORY", f"the model needed more than the job's memory limit of "
                                         f"{limit / 2**20:.0f} MiB on inputs {shapes} (the kernel holds the runner "
                                         f"to it): {text[text.find(found):][:160]}; use smaller inputs or raise "
                                         "--memory-limit-mb")
    return JobError("INFERENCE_FAILED",
                    f"the model failed on inputs {shapes}: {str(exc).strip()[:600]}; check the "
                    "--input-shape values against what the model expects")


def _run_once(backend: Backend, feeds: dict) -> list:
    try:
        return backend.run(feeds)
    except (MemoryError, JobError):
        raise
    except Exception as exc:
        raise _inference_error(feeds, exc) from exc


def measure(backend: Backend, feeds: dict, job: dict,
            reference: tuple[Backend, dict] | None = None) -> tuple[list[int], float, list[str], list[int]]:
    """Warm-up, then time run() until min iterations and min seconds are both reached (or max seconds).
    With a reference (backend, feeds), each timed inference of the model is followed by one timed inference
    of the reference, so both are measured over the same moments of the machine; its times come last."""
    for _ in range(job["warmup"]):
        _run_once(backend, feeds)
        if reference:
            _run_once(*reference)
    emit("progress", phase="measure", iterations=0, elapsed_s=0.0, message="warm-up done")
    times: list[int] = []
    ref_times: list[int] = []
    min_it, min_ns = job["min_iterations"], int(job["min_seconds"] * 1e9)
    max_ns = int(job["max_seconds"] * 1e9)
    clock = time.perf_counter_ns
    run = backend.run
    ref_run, ref_feeds = (reference[0].run, reference[1]) if reference else (None, None)
    start = clock()
    next_progress = start + int(PROGRESS_EVERY_S * 1e9)
    flags = []
    try:
        while True:
            t0 = clock()
            run(feeds)
            t1 = clock()
            times.append(t1 - t0)
            if ref_run is not None:
                ref_run(ref_feeds)
                t2 = clock()
                ref_times.append(t2 - t1)
                t1 = t2
            elapsed = t1 - start
            if len(times) >= min_it and elapsed >= min_ns:
                break
            if elapsed >= max_ns:
                flags.append("max_seconds_reached")
                break
            if t1 >= next_progress:
                emit("progress", phase="measure", iterations=len(times), elapsed_s=elapsed / 1e9)
                next_progress = t1 + int(PROGRESS_EVERY_S * 1e9)
    except (MemoryError, JobError):
        raise
    except Exception as exc:
        raise _inference_error(feeds, exc) from exc
    return times, (clock() - start) / 1e9, flags, ref_times


def load_reference(cls, path: Path, threads: int, input_shapes: dict) -> tuple[Backend, dict]:
    """The reference model of a BENCHMARK job, loaded by the same backend: an input with dynamic dimensions
    takes the job's --input-shape for its name (as the model's does), a fixed input keeps its own shape (a
    reference may be another model)."""
    ref = cls()
    try:
        ref.load(path, threads, None, input_shapes)
        specs = ref.inputs()
        given = {s.name: input_shapes[s.name] for s in specs
                 if s.name in input_shapes and not all(isinstance(d, int) for d in s.shape)}
        return ref, make_feeds(specs, resolve_shapes(specs, given))
    except JobError as exc:
        raise JobError(exc.code, f"the reference model: {exc.message}") from exc


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_job(job: dict) -> None:
    """Execute one job description and emit its events."""
    cls = backend_class(job["backend"])
    backend = cls()
    emit("started", backend=cls.name, backend_version=cls.version(), pid=os.getpid())
    kind = job["kind"]
    profile_dir = Path(job["work_dir"]) if kind == "PROFILE" else None
    emit("progress", phase="load", iterations=0, elapsed_s=0.0, message="building session")
    t0 = time.perf_counter_ns()
    backend.load(Path(job["model_path"]), job["threads"], profile_dir, job.get("input_shapes") or {})
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    if getattr(backend, "measures_itself", False):   # e.g. TensorRT through trtexec
        _run_external(backend, cls, job, load_ms)
        return
    specs = backend.inputs()
    if kind == "EVALUATE":
        samples = load_supplied_inputs(specs, Path(job["inputs_path"]))
        results = [_run_once(backend, feeds) for feeds in samples]
        outputs = [np.concatenate(outs) if len(results) > 1 else outs[0] for outs in zip(*results)]
        out_path = Path(job["work_dir"]) / "outputs.npz"
        save_arrays(out_path, dict(zip(backend.output_names(), outputs)))
        emit("outputs", path=str(out_path))
        return
    shapes = resolve_shapes(specs, job.get("input_shapes") or {})
    feeds = make_feeds(specs, shapes)
    t0 = time.perf_counter_ns()
    _run_once(backend, feeds)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    if kind == "PROFILE":
        job = {**job, "min_iterations": job["profile_iterations"], "min_seconds": 0.0}
    reference = (load_reference(cls, Path(job["reference_path"]), job["threads"], job.get("input_shapes") or {})
                 if job.get("reference_path") else None)
    meter = PowerMeter()
    meter.start()
    times, measured_s, flags, ref_times = measure(backend, feeds, job, reference)
    energy = meter.stop()
    result = _result(cls, job, times, load_ms, first_ms, measured_s, flags, shapes)
    if ref_times:
        result["reference_latency"] = latency_stats(ref_times)
        result["reference_times_ms"] = times_ms(ref_times)
    if energy and times and not ref_times:   # (with a reference the loop's energy is shared by two models)
        # the loop's energy over its inferences: joules per inference, as millijoules
        result["energy"] = {**energy, "mj_per_inference": energy["energy_j"] * 1000.0 / len(times)}
    if kind == "PROFILE":
        emit("progress", phase="profile", iterations=len(times), elapsed_s=measured_s,
             message="reading the profiler trace")
        skip = 1 + job["warmup"]
        rows, total_ms, runs = backend.layer_profile(skip_runs=skip)
        emit_layers(rows, total_ms, runs, fit(lambda k: backend.profile_trace(skip, k), runs))
        result["flags"] = result["flags"] + ["profiling_on"]
    emit("result", **result)


def emit_layers(rows: list[dict], total_ms: float, runs: int, trace: bytes) -> None:
    """The layers event; the trace (zlib-compressed Chrome-trace JSON, agent.trace) travels as base64 in the
    JSON line, which the servicer decodes into LayerRows.trace_json_zlib."""
    emit("layers", rows=rows, total_ms=total_ms, iterations=runs,
         trace_json_zlib=base64.b64encode(trace).decode("ascii"))


def times_ms(times_ns: list[int]) -> list[float]:
    """The first MAX_TIMES per-inference times in milliseconds, in order (Result.times_ms)."""
    return (np.asarray(times_ns[:MAX_TIMES], dtype=np.float64) / 1e6).round(6).tolist()


def _result(cls, job: dict, times: list[int], load_ms: float, first_ms: float, measured_s: float,
            flags: list[str], shapes: dict) -> dict:
    """The result event's fields for a measured loop (ns per inference in `times`)."""
    return {"latency": latency_stats(times), "times_ms": times_ms(times), "load_ms": load_ms,
            "first_inference_ms": first_ms,
            "peak_memory_bytes": peak_rss_bytes(), "threads": job["threads"], "backend": cls.name,
            "backend_version": cls.version(), "measured_seconds": measured_s, "flags": flags,
            "input_shapes": shapes, "warmup": job["warmup"]}


def _run_external(backend: Backend, cls, job: dict, load_ms: float) -> None:
    """A backend that times itself (a vendor tool such as trtexec): its per-inference times and, for a
    profile, its per-layer rows are reported like ours."""
    kind = job["kind"]
    if kind == "EVALUATE":
        raise JobError("BACKEND_UNAVAILABLE", f"backend '{cls.name}' in its command-line mode cannot return "
                                              "outputs; install its Python package on the device to evaluate")
    out = backend.measure_itself(job, Path(job["work_dir"]), profile=kind == "PROFILE")
    times = [int(ms * 1e6) for ms in out["times_ms"]]
    result = _result(cls, job, times, load_ms, 0.0, sum(times) / 1e9, [], job.get("input_shapes") or {})
    if kind == "PROFILE":
        meta = {"backend": cls.name, "backend_version": cls.version(), "runs_profiled": out["runs"],
                "note": "trtexec --exportProfile gives each layer's mean: one representative run"}
        trace = synthesised_trace([[(r, r["time_ms"]) for r in out["layers"]]], meta)
        emit_layers(out["layers"], out["total_ms"], out["runs"], pack(trace))
        result["flags"] = ["profiling_on"]
    emit("result", **result)


def main() -> int:
    """Child entry point; always exits 0 after emitting an error event for a failed job."""
    job = json.loads(sys.stdin.read())
    try:
        run_job(job)
    except JobError as exc:
        emit("error", code=exc.code, message=exc.message)
    except MemoryError:
        limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
        emit("error", code="OUT_OF_MEMORY", message=f"the runner ran out of memory (the job's limit is "
             f"{limit / 2**20:.0f} MiB, held by the kernel); lower the model's input size or raise the job's "
             "memory limit (--memory-limit-mb)")
    except Exception as exc:  # last resort: report, never hang the agent
        if is_disk_full(exc, Path.cwd()):
            emit("error", code="INTERNAL", message=disk_full_message(Path.cwd().parent))
        else:
            emit("error", code="INTERNAL", message=f"runner failed: {exc!r}\n{traceback.format_exc()[-1500:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
