"""Traces and per-iteration times as files: a profile's Chrome trace (what Perfetto and chrome://tracing
open; agent/trace.py says how the agent builds it), its check against the trace event format, the
per-run sum of its layer events, and `--export-times` (CSV or JSON, by the file's extension)."""

from __future__ import annotations

import csv
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.errors import FarmError, UsageError

TIMES_FORMATS = (".csv", ".json")
LAYER_SUFFIX = "_kernel_time"   # ONNX Runtime's name for a node's compute event (synthesised ones too)


def decode_trace(blob: bytes) -> dict | None:
    """LayerRows.trace_json_zlib as the trace object, or None when the agent sent none."""
    if not blob:
        return None
    return json.loads(zlib.decompress(blob))


def write_trace(trace: dict | None, path: str | Path) -> Path:
    """Write a Chrome trace as JSON (open it at ui.perfetto.dev or chrome://tracing)."""
    if trace is None:
        raise FarmError("the agent sent no trace with this profile (an agent older than the trace field, or "
                        "a runtime without one): update farm-agent on the device and profile again")
    path = Path(path)
    path.write_text(json.dumps(trace))
    return path


def check_times_path(path: str | Path) -> Path:
    """The --export-times file, whose extension picks the format: .csv or .json."""
    path = Path(path)
    if path.suffix.lower() not in TIMES_FORMATS:
        raise UsageError(f"--export-times writes CSV or JSON by the file's extension, and '{path.name}' has "
                         f"neither: name it {path.stem}.csv or {path.stem}.json")
    return path


def write_times(path: str | Path, times_ms: np.ndarray, reference_times_ms: np.ndarray,
                about: dict) -> Path:
    """Per-inference times in loop order: CSV (iteration,time_ms[,reference_time_ms]) or JSON (`about`,
    then `unit`, `times_ms` and, with a reference, `reference_times_ms`)."""
    path = check_times_path(path)
    times, ref = np.asarray(times_ms, np.float64), np.asarray(reference_times_ms, np.float64)
    if path.suffix.lower() == ".json":
        doc = {**about, "unit": "ms", "count": int(times.size), "times_ms": [round(float(t), 6) for t in times]}
        if ref.size:
            doc["reference_times_ms"] = [round(float(t), 6) for t in ref]
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["iteration", "time_ms"] + (["reference_time_ms"] if ref.size else []))
        for i, t in enumerate(times):
            out.writerow([i, f"{t:.6f}"] + ([f"{ref[i]:.6f}"] if i < ref.size else []))
    return path


def trace_problems(trace) -> list[str]:
    """What keeps `trace` from being a Chrome trace in the JSON-object format (empty when it is one): a
    `traceEvents` list; each complete event ("ph": "X") with name, ph, ts, dur, pid and tid, ts and dur
    non-negative numbers."""
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return ["not a JSON object with a traceEvents list"]
    problems = []
    for i, e in enumerate(trace["traceEvents"]):
        if not isinstance(e, dict) or "ph" not in e:
            problems.append(f"event {i} has no ph")
        elif e["ph"] == "X":
            missing = [k for k in ("name", "ph", "ts", "dur", "pid", "tid") if k not in e]
            bad = [k for k in ("ts", "dur") if k in e and not (isinstance(e[k], (int, float)) and e[k] >= 0)]
            if missing or bad:
                problems.append(f"event {i} ({e.get('name')}): missing {missing}, not a number >= 0: {bad}")
    return problems


@dataclass(frozen=True)
class RunSum:
    """One model run of a trace: its own duration, and the summed durations of the layer events inside it
    (microseconds)."""

    iteration: int       # 0 = the first measured run; negative: the first inference and warm-up runs
    phase: str           # first | warmup | measured
    run_us: float
    layers_us: float
    layers: int


def run_sums(trace: dict) -> list[RunSum]:
    """Per `model_run` event, the sum of the layer (`*_kernel_time`) events that fall inside it."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    layers = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith(LAYER_SUFFIX)),
                    key=lambda e: e["ts"])
    sums, j = [], 0
    for run in runs:
        end = run["ts"] + run["dur"]
        total, count = 0.0, 0
        while j < len(layers) and layers[j]["ts"] < run["ts"]:
            j += 1
        while j < len(layers) and layers[j]["ts"] <= end:
            total, count, j = total + layers[j]["dur"], count + 1, j + 1
        args = run.get("args", {})
        sums.append(RunSum(int(args.get("iteration", 0)), str(args.get("phase", "measured")),
                           float(run["dur"]), total, count))
    return sums
