"""One stored run with everything the store keeps of it (`farmctl show RUN`, `show_run`): what ran where,
its settings, its statistics, and its layers table for a profile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from controller.errors import FarmError
from controller.measure import frames
from controller.measure.compare import LIST_RUNS, profile_hint, reading
from controller.measure.store import ResultsStore

STATS = ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "std_ms", "cv", "iterations")


@dataclass
class RunView:
    """One run: `run` (every column of the runs table; `settings`, `result` and `device` are its JSON
    documents parsed), `layers` (a DataFrame of its layer rows, empty for a benchmark) and `times` (how many
    per-inference times the store holds)."""

    run: dict
    settings: dict
    result: dict
    device: dict
    layers: object           # pandas.DataFrame
    times: int = 0

    def about(self) -> list[tuple[str, str]]:
        """(field, value) lines: identity, settings, timings outside the loop."""
        r, mib = self.run, 2**20
        size = f", {_size(r['model_size'])}" if r["model_size"] else ""
        out = [("model", f"{r['model_name']} ({r['model_path'] or 'path not stored'}{size})"),
               ("model digest", r["model_digest"]),
               ("device", f"{r['device_name']} ({r['device_class'] or 'no class'}), fingerprint "
                          f"{(r['device_fingerprint'] or '')[:16]}"),
               ("backend", f"{r['backend']} {r['backend_version'] or ''}".strip()),
               ("threads", str(r["threads"] or "not recorded")), ("settings", json.dumps(self.settings, sort_keys=True)),
               ("when", r["created_at"]), ("status", r["status"] + (f": {r['error_code']}: {r['error']}"
                                                                    if r["error_code"] else ""))]
        for key, name in (("load_ms", "load"), ("first_inference_ms", "first inference")):
            if r[key] is not None:
                out.append((name, f"{r[key]:.3f} ms"))
        if r["peak_memory_bytes"]:
            out.append(("peak memory", f"{r['peak_memory_bytes'] / mib:.1f} MiB"))
        if self.result.get("measured_seconds"):
            out.append(("measured", f"{self.result['measured_seconds']:.2f} s"))
        if r["flags"]:
            out.append(("flags", r["flags"]))
        if r["reference_digest"]:
            ref = self.result.get("reference_latency") or {}
            out.append(("reference", f"{r['reference_digest'][:16]} timed in the same loop, p50 "
                                     f"{ref.get('p50_ms', 0.0):.3f} ms"))
        out.append(("per-inference times", f"{self.times} stored" if self.times else "none stored"))
        return out

    def to_markdown(self, top: int = 25) -> str:
        """The run as Markdown: what and where, the latency statistics, the slowest `top` layers (0: all)."""
        r = self.run
        text = f"## run {r['id']}: {r['model_name']} on {r['device_name']} ({r['kind']}, {r['status']})\n\n"
        text += "| field | value |\n|---|---|\n" + "".join(
            f"| {k} | {frames.cell(v)} |\n" for k, v in self.about())
        if r["p50_ms"] is not None:
            heads = [s.replace("_ms", " ms").replace("iterations", "n") for s in STATS]
            text += ("\n### latency\n\n| " + " | ".join(heads) + " |\n|" + "---:|" * len(STATS) + "\n| "
                     + " | ".join(frames.cell(r[s], 4 if s == "cv" else 3) for s in STATS) + " |\n")
        if len(self.layers):
            view = self.layers[["label", "op_type", "time_ms", "percent", "flops", "memory_bytes"]].rename(
                columns={"label": "layer", "time_ms": "A_ms"})
            text += f"\n### layers ({len(view)})\n\n" + _layer_table(view, top)
        elif r["kind"] == "benchmark":
            text += f"\nA benchmark stores no layers: {profile_hint(r)} does.\n"
        return text

    def to_json(self) -> dict:
        """What `farmctl show RUN --json` prints: the run's columns with its JSON documents parsed, and
        its layers."""
        run = {k: v for k, v in self.run.items() if k not in ("settings_json", "result_json", "device_json")}
        return {"run": run, "settings": self.settings, "result": self.result, "device": self.device,
                "times_stored": self.times, "layers": frames.records(self.layers)}


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"


def _layer_table(view, top: int) -> str:
    shown = view if top <= 0 else view.head(top)
    shown = shown.assign(flops=["n/a" if frames.missing(v) else f"{v / 1e6:.2f}" for v in shown["flops"]])
    text = frames.markdown(shown, {"percent": lambda v: f"{v:.1f}", "flops": str,
                                   "memory_bytes": lambda v: f"{v / 1024:.0f}"},
                           {"A_ms": "ms", "percent": "%", "flops": "MFLOPs", "memory_bytes": "KiB", "op_type": "op"})
    if len(view) > len(shown):
        text += f"\n{len(view) - len(shown)} more layers (`--top 0` shows them all)\n"
    return text


def show_run(store: ResultsStore | Path | str, run_id: int) -> RunView:
    """One stored run with its settings, statistics and layers."""
    with reading(store) as db:
        run = db.run(int(run_id))
        if run is None:
            raise FarmError(f"no run {run_id} in '{db.path}'; {LIST_RUNS}")
        layers = db.dataframe("layers", run=int(run_id))
        times = int(db.times(int(run_id))[0].size)
    parse = [json.loads(run[k] or "null") or {} for k in ("settings_json", "result_json", "device_json")]
    return RunView(run, *parse, layers=layers, times=times)

