"""ONNX Runtime backend: sessions with explicit threads, and per-layer rows from ORT's profiler JSON."""

from __future__ import annotations

import bisect
import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agent.backends import Backend, InputSpec
from agent.errors import JobError
from agent.trace import ort_trace

ort.disable_telemetry_events()   # ONNX Runtime's own usage telemetry: nothing leaves or is kept on a device

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


_UNKNOWN_OP = (
    re.compile(r"(?:(?P<domain>[\w.]+):)?(?P<op>\w+)\(-?\d+\) is not a registered function/op"),
    re.compile(r"No Op registered for (?P<op>\w+) with domain_version of \d+"),
    re.compile(r"Could not find an implementation for (?P<op>\w+)"),
)


def classify_load_error(exc: Exception) -> JobError:
    """Turn an ORT load failure into an error that says what is wrong with the model."""
    text = str(exc)
    for pattern in _UNKNOWN_OP:
        m = pattern.search(text)
        if m:
            domain = m.groupdict().get("domain") or "ai.onnx"
            return JobError("UNSUPPORTED_OP",
                            f"the model uses operator '{m.group('op')}' (domain '{domain}'), which onnxruntime "
                            f"{ort.__version__} does not implement; replace the op, export with a standard "
                            "opset, or register its custom-op library")
    if "External data" in text or "external data" in text:
        return JobError("INVALID_MODEL",
                        "the model keeps tensors in external data files, which an agent never reads (they could "
                        "name any file on the device): save it as one self-contained .onnx file "
                        "(onnx.save(model, path, save_as_external_data=False))")
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        return JobError("INVALID_MODEL",
                        "the file is not a valid ONNX model (protobuf parsing failed): it may be "
                        "truncated or not ONNX at all; re-export it or copy it again")
    return JobError("INVALID_MODEL", f"onnxruntime could not load the model: {text.strip()[:500]}")


class OnnxRuntimeBackend(Backend):
    """CPU execution provider by default; the session is built once per job."""

    name = "onnxruntime"

    def __init__(self) -> None:
        self.session: ort.InferenceSession | None = None
        self.profile_events: list[dict] = []

    @staticmethod
    def version() -> str:
        return ort.__version__

    @staticmethod
    def providers() -> list[str]:
        return list(ort.get_available_providers())

    def load(self, path: Path, threads: int, profile_dir: Path | None = None,
             input_shapes: dict[str, list[int]] | None = None) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if profile_dir is not None:
            so.enable_profiling = True
            so.profile_file_prefix = str(profile_dir / "ort_profile")
        try:   # from bytes: ORT then resolves no external data beside the cached file (other models live there)
            self.session = ort.InferenceSession(Path(path).read_bytes(), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise classify_load_error(exc) from exc

    def inputs(self) -> list[InputSpec]:
        specs = []
        for i in self.session.get_inputs():
            if i.type not in _ORT_TYPES:
                raise JobError("INVALID_INPUT", f"input '{i.name}' has type {i.type}, which edgefarm cannot "
                                                "generate data for")
            dims = [d if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) else None)
                    for d in i.shape]
            specs.append(InputSpec(i.name, np.dtype(_ORT_TYPES[i.type]), dims))
        return specs

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def layer_profile(self, skip_runs: int) -> tuple[list[dict], float, int]:
        path = self.session.end_profiling()
        self.profile_events = json.loads(Path(path).read_text())
        return parse_ort_profile(self.profile_events, skip_runs)

    def profile_trace(self, skip_runs: int, max_runs: int) -> dict | None:
        """ONNX Runtime's own profiler events (already Chrome-trace events), as agent.trace.ort_trace keeps them."""
        if not self.profile_events:
            return None
        meta = {"backend": self.name, "backend_version": ort.__version__}
        return ort_trace(self.profile_events, skip_runs, max_runs, meta)


def _shape_strings(entries: list) -> list[str]:
    out = []
    for entry in entries or []:
        for dtype, dims in entry.items():
            out.append(f"{dtype}[{','.join(str(d) for d in dims)}]")
    return out


def parse_ort_profile(events: list[dict], skip_runs: int = 0) -> tuple[list[dict], float, int]:
    """Aggregate ORT profiler events into per-node rows, dropping the first skip_runs (warm-up) runs."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    kept = runs[skip_runs:]
    if not kept:
        raise JobError("INTERNAL", "the profiler recorded no measured runs; raise --min-iterations")

    starts = [start for start, _ in kept]

    def run_index(ts: int) -> int | None:
        i = bisect.bisect_right(starts, ts) - 1
        return i if i >= 0 and ts <= kept[i][1] else None

    acc: dict[str, dict] = {}
    order: list[str] = []
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if run_index(e["ts"]) is None:
            continue
        name = e["name"][: -len("_kernel_time")]
        args = e.get("args", {})
        row = acc.get(name)
        if row is None:
            mem = sum(int(args.get(k, 0) or 0) for k in ("activation_size", "parameter_size", "output_size"))
            row = acc[name] = {
                "name": name, "op_type": args.get("op_name", ""), "time_us": 0.0,
                "input_shapes": _shape_strings(args.get("input_type_shape")),
                "output_shapes": _shape_strings(args.get("output_type_shape")),
                "memory_bytes": mem, "provider": args.get("provider", ""),
            }
            order.append(name)
        row["time_us"] += e["dur"]
    n = len(kept)
    node_total = sum(r["time_us"] for r in acc.values()) or 1.0
    rows = []
    for name in order:
        r = acc[name]
        rows.append({**{k: v for k, v in r.items() if k != "time_us"},
                     "time_ms": r["time_us"] / n / 1000.0,
                     "percent": 100.0 * r["time_us"] / node_total})
    total_ms = sum(end - start for start, end in kept) / n / 1000.0
    return rows, total_ms, n
