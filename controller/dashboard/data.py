"""What the dashboard reads from the results store, only through ResultsStore's methods (so a PostgreSQL
store works as the SQLite file does): runs with filters, one run with its layers, the last telemetry of a
device, and the optimize runs with their candidates and decision."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from controller.measure.frames import records
from controller.measure.store import ResultsStore

KINDS = ("benchmark", "profile")


@dataclass
class RunFilter:
    """The runs page's filter: model name or digest prefix, device name, kind, a date range (inclusive)."""

    model: str | None = None
    device: str | None = None
    kind: str | None = None
    since: date | None = None
    until: date | None = None
    limit: int = 200

    def matches_date(self, created_at: str) -> bool:
        day = created_at[:10]
        return (self.since is None or day >= self.since.isoformat()) and \
            (self.until is None or day <= self.until.isoformat())


def list_runs(store: ResultsStore, f: RunFilter) -> tuple[list[dict], int]:
    """The newest runs that pass the filter (at most f.limit) and how many pass it in all."""
    if f.since is None and f.until is None:
        rows = store.runs(model=f.model, device=f.device, kind=f.kind, limit=f.limit)
        total = len(rows) if len(rows) < f.limit else store_count(store, f)
        return rows, total
    rows = [r for r in store.runs(model=f.model, device=f.device, kind=f.kind) if f.matches_date(r["created_at"])]
    return rows[:f.limit], len(rows)


def store_count(store: ResultsStore, f: RunFilter) -> int:
    """How many runs pass a filter without dates."""
    return store.count_runs(model=f.model, device=f.device, kind=f.kind)   # counted by the database


def run_detail(store: ResultsStore, run_id: int) -> dict | None:
    """One run's stored row with its settings, result and device JSON decoded, and its per-inference times
    when the store kept them (None: no such run)."""
    row = store.run(run_id)
    if row is None:
        return None
    for name in ("settings", "result", "device"):
        row[name] = json.loads(row.pop(f"{name}_json", None) or "null") or {}
    times, _ = store.times(run_id)
    row["times_ms"] = [round(float(t), 4) for t in times]
    return row


def profiles_of(store: ResultsStore, run: dict, limit: int = 5) -> list[dict]:
    """Profile runs of the same model digest on the same device, newest first (for a benchmark run's page)."""
    return [r for r in store.runs(model=run["model_digest"], device=run["device_name"], kind="profile",
                                  limit=limit)]


def telemetry_summary(result: dict | None) -> dict | None:
    """Temperature, clock, throttling and load from a stored result's telemetry after the run."""
    t = (result or {}).get("telemetry_after") or {}
    if not t:
        return None
    temps = [z.get("temp_c") for z in t.get("thermal", []) if z.get("temp_c")]
    rpi = t.get("rpi") or {}
    temp = rpi.get("temp_c") or (max(temps) if temps else None)
    freqs = t.get("cpufreq", [])
    cur = [int(c.get("cur_khz", 0)) for c in freqs if int(c.get("cur_khz", 0))]
    hw = [int(c.get("hw_max_khz", 0) or c.get("max_khz", 0)) for c in freqs]
    throttled = rpi.get("throttled") or {}
    flags = (result or {}).get("flags", [])
    return {"temp_c": temp, "freq_mhz": round(sum(cur) / len(cur) / 1000) if cur else None,
            "max_mhz": round(max(hw) / 1000) if hw and max(hw) else None,
            "throttled": bool(throttled.get("now")) or "throttled" in flags,
            "throttle_reasons": list(throttled.get("reasons", [])), "load_1m": t.get("load_1m"),
            "timestamp": t.get("timestamp")}


def last_telemetry(store: ResultsStore, device_name: str) -> dict | None:
    """The telemetry of the newest successful run stored for a device, with that run's id and time."""
    newest = store.runs(device=device_name, status="ok", limit=1)
    if not newest:
        return None
    run = store.run(newest[0]["id"]) or {}
    summary = telemetry_summary(json.loads(run.get("result_json") or "null"))
    return summary and {**summary, "run_id": newest[0]["id"], "created_at": newest[0]["created_at"]}


# optimize runs ---------------------------------------------------------------------------------------------

@dataclass
class OptimizeSummary:
    """One optimize run (an optimize key) in the list: model, devices, rows, last write, choices."""

    key: str
    model: str
    devices: list[str]
    rows: int
    measured: int
    first_at: str
    last_at: str
    chosen: dict[str, str | None] = field(default_factory=dict)   # device -> chosen name (None: nothing)


def _candidates(store: ResultsStore, key: str | None = None) -> list[dict]:
    """Stored candidate rows (every optimize run's, or one's), oldest first, their detail JSON parsed."""
    rows = records(store.dataframe("candidates", **({"optimize_key": key} if key else {})))
    for r in rows:
        r["detail"] = json.loads(r.pop("detail_json") or "null") or {}
    return rows


def _model_name(rows: list[dict]) -> str:
    """The model's name as the run's report gives it (stored with the baseline), else its file's stem."""
    base = next((c for c in rows if c["name"] == "baseline"), None)
    if base is None:
        return "?"
    return base["detail"].get("model") or (Path(base["model_path"]).stem if base.get("model_path") else "?")


def _decision(row: dict) -> dict:
    return row["detail"].get("decision") or {} if row["name"] == "baseline" else {}


def optimize_runs(store: ResultsStore) -> list[OptimizeSummary]:
    """Every optimize run in the store, the most recently written first."""
    by_key: dict[str, list[dict]] = {}
    for row in _candidates(store):
        by_key.setdefault(row["optimize_key"], []).append(row)
    out = []
    for key, rows in by_key.items():
        times = sorted(r["created_at"] for r in rows)
        chosen = {r["device_name"]: _decision(r).get("chosen") for r in rows if _decision(r)}
        out.append(OptimizeSummary(key, _model_name(rows), sorted({r["device_name"] for r in rows}), len(rows),
                                   sum(r["status"] == "ok" for r in rows), times[0], times[-1], chosen))
    return sorted(out, key=lambda s: s.last_at, reverse=True)


def quality_key(rows: list[dict]) -> str:
    """The quality the plot and table lead with: the task metric, accuracy with labels, else fidelity."""
    if any(r.get("metric_value") is not None for r in rows):
        return "metric_value"
    return "accuracy" if any(r.get("accuracy") is not None for r in rows) else "fidelity"


def _row(n: int, c: dict, decision: dict) -> dict:
    verdict = (decision.get("rows") or {}).get(c["name"]) or {}
    baseline = c["name"] == "baseline"
    return {"number": n, "name": c["name"], "techniques": c["techniques"],
            "status": verdict.get("status") or c["status"], "reason": verdict.get("reason") or c["reason"] or "",
            "p50_ms": c["p50_ms"], "p90_ms": c["p90_ms"], "p99_ms": c["p99_ms"], "cv": c["cv"],
            "flags": [f for f in (c["flags"] or "").split(",") if f], "size_bytes": c["size_bytes"],
            "accuracy": c["accuracy"], "fidelity": c["fidelity"], "metric_value": c["detail"].get("metric_value"),
            "speedup": 1.0 if baseline else c["paired_speedup"], "speedup_low": None if baseline else c["paired_low"],
            "speedup_high": None if baseline else c["paired_high"], "meets": bool(verdict.get("meets")),
            "run_id": c["run_id"], "created_at": c["created_at"]}


def optimize_state(store: ResultsStore, key: str) -> dict | None:
    """One optimize run as its live page polls it: per device its rows (baseline first, then in the order
    they were written), its decision once made, and a version that changes with every write."""
    items = _candidates(store, key)
    if not items:
        return None
    out: dict = {"key": key, "model": _model_name(items), "devices": {}}
    for device in dict.fromkeys(c["device_name"] for c in items):
        mine = sorted((c for c in items if c["device_name"] == device),
                      key=lambda c: (c["name"] != "baseline", c["created_at"]))
        decision = next((_decision(c) for c in mine if _decision(c)), {})
        rows = [_row(i, c, decision) for i, c in enumerate(mine)]
        out["devices"][device] = {"rows": rows, "chosen": decision.get("chosen"), "failure": decision.get("failure"),
                                  "decided_at": decision.get("decided_at"), "quality": quality_key(rows)}
    out["last_write"] = max(c["created_at"] for c in items)
    out["version"] = hashlib.sha1(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return out
