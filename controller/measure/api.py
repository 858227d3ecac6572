"""bench and profile as a Python API: check the model, ship it, run the job, store every number."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from agent.stats import PairedRatio, paired_ratio
from controller.errors import JobFailed, ModelError
from controller.fleet.client import AgentClient
from controller.fleet.connect import connect
from controller.fleet.inventory import LOCAL, load_inventory, resolve_device
from controller.measure.preflight import ModelRef, check_model, display_path, resolve_model
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore, RunRecord, location, opened
from controller.measure.trace import decode_trace, write_times, write_trace
from optimizers.graph.flops import GraphFlops, graph_flops, row_flops
from optimizers.graph.layer_names import layer_label
from optimizers.on_device import FarmProfileRequest
from protos import agent_pb2 as pb
from protos.codec import array_to_tensor, tensor_to_array, to_dict

log = logging.getLogger(__name__)

BOTTLENECK_PERCENT = 10.0
ProgressFn = Callable[[str, pb.RunEvent], None]
TIMES = ("times_ms", "reference_times_ms")


def default_store_path() -> Path | str:
    """$EDGEFARM_STORE (a file path, or a postgresql:// URL kept as text), else edgefarm-results.db in the
    current folder."""
    return location(os.environ.get("EDGEFARM_STORE") or "edgefarm-results.db")


@dataclass
class BenchResult:
    """One benchmark on one device."""

    device: str
    device_class: str
    model: str
    model_digest: str
    backend: str
    backend_version: str
    threads: int
    latency_ms: dict
    cv: float
    iterations: int
    flags: list[str]
    load_ms: float
    first_inference_ms: float
    peak_memory_bytes: int
    measured_seconds: float
    input_shapes: dict
    upload_bytes: int
    run_id: int | None
    telemetry: dict = field(default_factory=dict)
    energy: dict = field(default_factory=dict)   # source, energy_j, avg_power_w, mj_per_inference (if any)
    reference_latency_ms: dict = field(default_factory=dict)   # min/p50/p90/p99 of the reference, if one ran
    # per-inference times in order (Result.times_ms); with a reference, its i-th time ran right after ours
    times_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    reference_times_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    throughput: dict = field(default_factory=dict)   # inferences_per_s, batch, samples_per_s (see throughput())

    def to_json(self) -> dict:
        """The object `farmctl bench --json` prints (without the per-inference times)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in TIMES}

    def export_times(self, path: str | Path) -> Path:
        """Write the per-inference times (and the reference's) to a .csv or .json file."""
        return write_times(path, self.times_ms, self.reference_times_ms, _about(self))

    def paired_speedup(self) -> PairedRatio:
        """With a reference: the median over iteration pairs of reference time / this model's time, with
        its 95 % interval (> 1: this model is faster than the reference on the same moments)."""
        if not self.reference_times_ms.size:
            raise ValueError("this benchmark ran without a reference: bench(..., reference=MODEL)")
        return paired_ratio([(self.reference_times_ms, self.times_ms)])


@dataclass
class ProfileResult:
    """A per-layer profile on one device; layers sorted slowest first."""

    device: str
    model: str
    model_digest: str
    backend: str
    backend_version: str
    threads: int
    total_ms: float
    iterations: int
    layers: list[dict]
    bottlenecks: list[str]
    bottleneck_percent: float
    total_flops: int         # FLOPs of one inference over the ops whose FLOPs are known: a lower bound ...
    run_id: int | None
    flops_unknown_ops: int = 0   # ... when this many ops (outside optimizers.graph.flops' tables) count as unknown
    # the profiled loop's per-inference times, and the trace the agent sent (zlib-compressed Chrome-trace JSON)
    times_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    trace_json_zlib: bytes = field(default=b"", repr=False)

    def to_json(self) -> dict:
        """The object `farmctl profile --json` prints (without the times and the trace)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("times_ms", "trace_json_zlib")}

    @property
    def trace(self) -> dict | None:
        """The profile as a Chrome trace ({"traceEvents": [...]}), or None when the agent sent none."""
        return decode_trace(self.trace_json_zlib)

    def write_trace(self, path: str | Path) -> Path:
        """Write the Chrome trace as JSON: open it at ui.perfetto.dev or chrome://tracing."""
        return write_trace(self.trace, path)

    def export_times(self, path: str | Path) -> Path:
        """Write the profiled loop's per-inference times (profiler on) to a .csv or .json file."""
        return write_times(path, self.times_ms, np.zeros(0), _about(self))


def _about(res: BenchResult | ProfileResult) -> dict:
    return {"model": res.model, "model_digest": res.model_digest, "device": res.device, "backend": res.backend,
            "backend_version": res.backend_version, "threads": res.threads, "run_id": res.run_id}


def throughput(mean_ms: float, input_shapes: dict[str, list[int]]) -> dict:
    """Inferences per second of the benchmark's loop, 1000 / mean ms: one stream, one inference after another
    (not concurrent requests). samples_per_s multiplies it by the batch, taken as the first dimension when
    every input has at least 2 dimensions and all share that first one (NCHW, NLC ... layouts); else the
    batch is unknown (null)."""
    ips = 1000.0 / mean_ms if mean_ms > 0 else 0.0
    firsts = {dims[0] for dims in input_shapes.values() if len(dims) >= 2}
    batch = firsts.pop() if len(firsts) == 1 and all(len(d) >= 2 for d in input_shapes.values()) else None
    return {"inferences_per_s": ips, "batch": batch, "samples_per_s": ips * batch if batch else None}


@contextmanager
def _client_for(device: str | AgentClient, inventory: Path | None) -> Iterator[AgentClient]:
    if isinstance(device, AgentClient):
        with nullcontext(device) as client:
            yield client
        return
    with connect(resolve_device(device, load_inventory(inventory))) as client:
        yield client


@dataclass
class JobOutcome:
    """What one job on one device returned."""

    info: pb.DeviceInfo
    digest: str
    bytes_sent: int
    result: dict
    layers: dict
    error: dict | None
    outputs: dict = field(default_factory=dict)
    times: dict[str, np.ndarray] = field(default_factory=dict)   # Result.times_ms / reference_times_ms
    trace: bytes = b""   # LayerRows.trace_json_zlib
    reference_digest: str = ""   # the reference timed in the same loop (RunRequest.reference_digest)


def _result_fields(result: pb.Result) -> tuple[dict, dict[str, np.ndarray]]:
    """The result as a dict, and its per-inference times as arrays (kept out of the dict: 100,000 floats
    through MessageToDict would be slow)."""
    times = {name: np.asarray(getattr(result, name), np.float32) for name in TIMES}
    rest = pb.Result()
    rest.CopyFrom(result)
    for name in TIMES:
        rest.ClearField(name)
    return to_dict(rest), times


def _run(client: AgentClient, kind: int, ref: ModelRef, settings: MeasureSettings,
         progress: ProgressFn | None, inputs: list | None = None, reference: ModelRef | None = None) -> JobOutcome:
    """Upload the model (and the reference) if the agent lacks it, run one job, collect its events."""
    info = client.info()
    sent = 0
    for _attempt in range(2):  # a model evicted between upload and run (a busy, small cache) is sent again
        upload = client.ensure_model(ref.path)
        sent += upload.bytes_sent
        ref_digest = ""
        if reference is not None:
            ref_upload = client.ensure_model(reference.path)
            sent += ref_upload.bytes_sent
            ref_digest = ref_upload.digest
        request = pb.RunRequest(kind=kind, model_digest=upload.digest, backend=ref.backend,
                                settings=settings.to_proto(), time_limit_s=settings.time_limit_s,
                                memory_limit_bytes=int(settings.memory_limit_mb * 2**20), inputs=inputs or [],
                                reference_digest=ref_digest, priority=settings.run_priority())
        result, layers, error, outputs, times, trace = {}, {}, None, {}, {}, b""
        for event in client.run(request):
            which = event.WhichOneof("event")
            if progress:
                progress(client.name, event)
            if which == "result":
                result, times = _result_fields(event.result)
            elif which == "layers":
                trace = event.layers.trace_json_zlib
                event.layers.ClearField("trace_json_zlib")   # bytes: kept as they are, not as base64 text
                layers = to_dict(event.layers)
            elif which == "outputs":
                outputs = {t.name: tensor_to_array(t) for t in event.outputs.tensors}
            elif which == "error":
                error = {"code": pb.ErrorCode.Name(event.error.code), "message": event.error.message}
        if not error or error["code"] != "MODEL_NOT_FOUND":
            break
    return JobOutcome(info, upload.digest, sent, result, layers, error, outputs, times, trace,
                      reference_digest=ref_digest)


def _record(store: ResultsStore | None, kind: str, ref: ModelRef, settings: MeasureSettings,
            job: JobOutcome, layers: list[dict]) -> int | None:
    if store is None:
        return None
    threads = job.result.get("threads") or settings.threads
    backend_version = job.result.get("backend_version") or next(
        (b.version for b in job.info.backends if b.name == ref.backend), "")
    return store.record(RunRecord(
        kind, {"name": ref.name, "path": display_path(ref.path), "digest": job.digest, "size": ref.path.stat().st_size},
        to_dict(job.info), ref.backend, backend_version, settings.as_dict(), settings.key(threads),
        job.result or None, layers, job.error and job.error["code"], job.error and job.error["message"],
        times=job.times, reference_digest=job.reference_digest))


def _prepare(model: str | Path | ModelRef | None,
             settings: MeasureSettings | None) -> tuple[ModelRef, MeasureSettings]:
    """Check the model (a ModelRef is already checked); the settings returned carry every input's concrete
    shape."""
    settings = settings or MeasureSettings()
    ref = model if isinstance(model, ModelRef) else check_model(
        resolve_model(str(model) if model is not None else None), settings.input_shapes)
    return ref, replace(settings, input_shapes=ref.input_shapes)


def bench(model: str | Path | ModelRef | None = None, device: str | AgentClient = LOCAL,
          settings: MeasureSettings | None = None, store: ResultsStore | Path | str | None = None,
          inventory: Path | None = None, progress: ProgressFn | None = None,
          reference: str | Path | ModelRef | None = None) -> BenchResult:
    """Measure latency of a model on a device (the built-in example when model is None). With a
    `reference` model, each inference of the model is followed by one of the reference in the same loop on
    the device; the reference's latency comes back as `reference_latency_ms`, so a measurement taken while
    the device was slowed (a shared VM, throttling) can be recognised and scaled."""
    ref, settings = _prepare(model, settings)
    reference_ref = None
    if reference is not None:
        reference_ref = reference if isinstance(reference, ModelRef) else check_model(resolve_model(str(reference)))
        if reference_ref.backend != ref.backend:
            raise ModelError(f"the reference {reference_ref.name} runs on {reference_ref.backend} but the model "
                             f"on {ref.backend}; use a reference of the same format")
    with opened(store) as db, _client_for(device, inventory) as client:
        job = _run(client, pb.BENCHMARK, ref, settings, progress, reference=reference_ref)
        run_id = _record(db, "benchmark", ref, settings, job, [])
        if job.error:
            raise JobFailed(job.error["code"], job.error["message"], client.name)
    result, info, digest, sent = job.result, job.info, job.digest, job.bytes_sent
    lat = result["latency"]
    if not lat.get("p95_ms") and job.times["times_ms"].size:   # an agent older than LatencyStats.p95_ms
        lat["p95_ms"] = float(np.percentile(job.times["times_ms"].astype(np.float64), 95))
    shapes = {k: [int(d) for d in v.get("dims", [])] for k, v in result["input_shapes"].items()}
    return BenchResult(
        device=info.name, device_class=info.device_class, model=ref.name, model_digest=digest,
        backend=result["backend"], backend_version=result["backend_version"], threads=result["threads"],
        latency_ms={k: lat.get(f"{k}_ms", 0.0) for k in ("min", "p50", "p90", "p95", "p99", "max", "mean", "std")},
        cv=lat["cv"], iterations=lat["count"], flags=list(result.get("flags", [])),
        load_ms=result["load_ms"], first_inference_ms=result["first_inference_ms"],
        peak_memory_bytes=int(result["peak_memory_bytes"]), measured_seconds=result["measured_seconds"],
        input_shapes=shapes, upload_bytes=sent, run_id=run_id,
        telemetry={"before": result.get("telemetry_before"), "after": result.get("telemetry_after")},
        energy=result.get("energy") or {},
        reference_latency_ms=({k: result["reference_latency"][f"{k}_ms"] for k in ("min", "p50", "p90", "p99")}
                              if "reference_latency" in result else {}),
        throughput=throughput(lat["mean_ms"], shapes), **job.times)


def profile(model: str | Path | ModelRef | None = None, device: str | AgentClient = LOCAL,
            settings: MeasureSettings | None = None, store: ResultsStore | Path | str | None = None,
            inventory: Path | None = None, progress: ProgressFn | None = None,
            bottleneck_percent: float = BOTTLENECK_PERCENT) -> ProfileResult:
    """Per-layer profile on a device, with FLOPs per layer from the ONNX graph."""
    ref, settings = _prepare(model, settings)
    with opened(store) as db, _client_for(device, inventory) as client:
        job = _run(client, pb.PROFILE, ref, settings, progress)
        rows = sorted(job.layers.get("rows", []), key=lambda r: -r["time_ms"])
        onnx_graph = ref.backend == "onnxruntime"
        graph = graph_flops(ref.model, ref.input_shapes) if onnx_graph else GraphFlops({}, {})
        for r in rows:   # FLOPs None: unknown (an op outside optimizers.graph.flops' tables, or a .tflite model)
            r["flops"], r["source_nodes"] = row_flops(r, graph) if onnx_graph else (None, [])
            r["memory_bytes"] = int(r.get("memory_bytes", 0))   # an int64 in the wire message
            r["label"] = layer_label(r["name"], r["source_nodes"])
            r["gflops_per_s"] = (r["flops"] / (r["time_ms"] * 1e6) if r["time_ms"] > 0 else 0.0) \
                if r["flops"] is not None else None
        run_id = _record(db, "profile", ref, settings, job, rows)
        if job.error:
            raise JobFailed(job.error["code"], job.error["message"], client.name)
    result, info, digest, layer_msg = job.result, job.info, job.digest, job.layers
    return ProfileResult(
        device=info.name, model=ref.name, model_digest=digest, backend=result["backend"],
        backend_version=result["backend_version"], threads=result["threads"],
        total_ms=layer_msg.get("total_ms", 0.0), iterations=layer_msg.get("iterations", 0), layers=rows,
        bottlenecks=[r["name"] for r in rows if r["percent"] >= bottleneck_percent],
        bottleneck_percent=bottleneck_percent, total_flops=graph.total, run_id=run_id,
        flops_unknown_ops=len(graph.unknown) if onnx_graph else len(rows),
        times_ms=job.times.get("times_ms", np.zeros(0, np.float32)), trace_json_zlib=job.trace)


def profile_for_optimizers(request: FarmProfileRequest) -> ProfileResult:
    """The farm profiler the optimizers call for `Profiler(model).profile(device=NAME)` (registered in
    optimizers.on_device when the controller is imported)."""
    settings = MeasureSettings(threads=request.threads, warmup=request.warmup,
                               profile_iterations=request.iterations, min_iterations=1, min_seconds=0.0,
                               input_shapes=request.input_shapes)
    return profile(request.path, device=request.device, settings=settings, store=request.store,
                   inventory=request.inventory)


def evaluate_outputs(model: str | Path | ModelRef, inputs: dict, device: str | AgentClient = LOCAL,
                     settings: MeasureSettings | None = None, inventory: Path | None = None,
                     progress: ProgressFn | None = None) -> dict:
    """Run the model once on the device on `inputs` ({name: array}) and return its outputs ({name: array}).
    For a model whose batch dimension is fixed at 1, inputs stacked N deep along it are run one sample at
    a time on the device and the outputs come back stacked the same way."""
    ref, settings = _prepare(model, settings)
    tensors = [array_to_tensor(name, np.ascontiguousarray(arr)) for name, arr in inputs.items()]
    with _client_for(device, inventory) as client:
        job = _run(client, pb.EVALUATE, ref, settings, progress, inputs=tensors)
        if job.error:
            raise JobFailed(job.error["code"], job.error["message"], client.name)
    return job.outputs
