"""A profile as a Chrome trace: the JSON object (`{"traceEvents": [...]}`) that Perfetto and
chrome://tracing open. ONNX Runtime's profiler already writes these events; they are kept as it wrote them
(each `model_run` gains `phase` and `iteration` args). LiteRT and TensorRT have no such file, so the same
format is synthesised from their per-layer times: a `model_run` complete event per run, and inside it one
`<layer>_kernel_time` event (cat `Node`, args `op_name`, shapes, provider) per layer, back to back.

A trace travels zlib-compressed (LayerRows.trace_json_zlib), at most TRACE_MAX_BYTES: a larger one keeps
fewer measured runs (halving), which its `otherData` says."""

from __future__ import annotations

import bisect
import json
import zlib
from collections.abc import Callable

TRACE_MAX_BYTES = 4 * 2**20   # compressed; a profile of a few hundred nodes x 30 runs is well under 1 MiB
RUN_GAP_NS = 10_000            # between synthesised runs, whose real start times no runtime reports


def pack(trace: dict) -> bytes:
    """The trace as compact JSON, zlib-compressed (what LayerRows.trace_json_zlib carries)."""
    return zlib.compress(json.dumps(trace, separators=(",", ":")).encode(), 6)


def fit(build: Callable[[int], dict | None], runs: int, limit: int = TRACE_MAX_BYTES) -> bytes:
    """pack(build(k)) for the largest k, from `runs` halving down to 1, that packs within `limit` bytes
    (b"" when build gives no trace)."""
    k = max(runs, 1)
    while True:
        trace = build(k)
        if trace is None:
            return b""
        blob = pack(trace)
        if len(blob) <= limit or k == 1:
            return blob
        k //= 2


def chrome_trace(events: list[dict], meta: dict) -> dict:
    """The JSON-object form of a Chrome trace: events, a process name, and edgefarm's notes in otherData."""
    pid = next((e["pid"] for e in events if "pid" in e), 0)
    name = {"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
            "args": {"name": f"{meta.get('backend', 'runtime')} {meta.get('backend_version', '')}".strip()}}
    return {"traceEvents": [name, *events], "displayTimeUnit": "ms", "otherData": meta}


def _phase(index: int, skip_runs: int) -> str:
    return "first" if index == 0 else ("warmup" if index < skip_runs else "measured")


def ort_trace(events: list[dict], skip_runs: int, max_runs: int, meta: dict) -> dict:
    """ONNX Runtime's events with the first-inference and warm-up runs (`skip_runs` of them) and at most
    `max_runs` measured runs; events outside any run (model loading, session initialisation) are kept."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    keep = skip_runs + max_runs
    starts = [e["ts"] for e in runs]
    kept = []
    for e in events:
        i = bisect.bisect_right(starts, e.get("ts", 0)) - 1
        inside = i >= 0 and e.get("ts", 0) <= runs[i]["ts"] + runs[i]["dur"]
        if inside and i >= keep:
            continue
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            e = {**e, "args": {**e.get("args", {}), "phase": _phase(i, skip_runs), "iteration": i - skip_runs}}
        kept.append(e)
    measured = max(len(runs) - skip_runs, 0)
    return chrome_trace(kept, {**meta, "runs_profiled": measured, "runs_in_trace": min(measured, max_runs),
                               "skipped_runs": skip_runs, "synthesised": False})


def layer_event(row: dict, ts_ns: int, dur_ns: int, pid: int) -> dict:
    """One layer as ORT writes a node: `<name>_kernel_time`, cat Node, with its op type and shapes."""
    return {"cat": "Node", "name": f"{row['name']}_kernel_time", "ph": "X", "ts": ts_ns / 1000,
            "dur": dur_ns / 1000, "pid": pid, "tid": pid,
            "args": {"op_name": row.get("op_type", ""), "provider": row.get("provider", ""),
                     "input_shapes": list(row.get("input_shapes", [])),
                     "output_shapes": list(row.get("output_shapes", []))}}


def synthesised_trace(runs: list[list[tuple[dict, float]]], meta: dict, pid: int = 1) -> dict:
    """A trace from per-layer times: `runs` lists, per run, (layer row, its time in ms) in execution order.
    Layers are laid back to back from the run's start (the runtimes report durations, not start times);
    times are whole nanoseconds, so a run's layers end exactly where the run does."""
    events, t = [], 0
    for i, layers in enumerate(runs):
        start, run = t, {"cat": "Session", "name": "model_run", "ph": "X", "ts": t / 1000, "pid": pid,
                         "tid": pid, "args": {"phase": "measured", "iteration": i}}
        events.append(run)
        for row, ms in layers:
            dur = max(int(round(ms * 1e6)), 0)
            events.append(layer_event(row, t, dur, pid))
            t += dur
        run["dur"] = (t - start) / 1000
        t += RUN_GAP_NS
    return chrome_trace(events, {**meta, "runs_in_trace": len(runs), "skipped_runs": 0, "synthesised": True})
