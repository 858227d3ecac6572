"""`farmctl optimize`: measure the baseline on each device, make candidates, measure and evaluate each one
on the device(s), refine from the measurements, and choose the fastest candidate that meets every
constraint (DESIGN.md, "The optimize loop"). Every number goes into the store as it arrives, so a
killed run resumes where it stopped."""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np

from controller.errors import AgentUnavailable, FarmError
from controller.fleet.client import file_digest
from controller.fleet.inventory import LOCAL, connect_pool, load_inventory, resolve_devices
from controller.fleet.scheduler import JobLost, Scheduler
from controller.measure.api import bench, evaluate_outputs, profile
from controller.measure.paired import (
    PairedRounds,
    could_be_faster,
    least_disturbed_baseline,
    paired_loop,
    ratio_from_json,
    ratio_to_json,
    speed_failure,
)
from controller.measure.preflight import ModelRef, check_model
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from controller.optimization import candidates as plan_mod
from controller.optimization import refine
from controller.optimization.candidates import REUSE_ALL, REUSE_CHOICES, REUSE_NOTHING
from controller.optimization.constraints import Constraints, closest, judge, metric_or_error, stack_inputs
from controller.optimization.sources import Source, example_source, onnx_source, optimize_key
from controller.progress import ProgressBar
from optimizers.metrics import Metric

log = logging.getLogger(__name__)

CONFIRM_ROUNDS = 2            # extra paired loops for each candidate that could be faster than the baseline


@dataclass
class DeviceResult:
    """The comparison on one device: baseline, every candidate, and the choice."""

    device: str
    baseline: dict
    candidates: list[dict]
    chosen: str | None
    artifact: str | None
    failure: str | None = None   # why nothing was chosen

    def to_json(self, model: str, report: str | None, metric: str | None = None) -> dict:
        """The object DESIGN.md lists for `farmctl optimize --json` (`metric`: the --metric's name)."""
        return {"device": self.device, "model": model, "metric": metric, "baseline": _public(self.baseline),
                "candidates": [_public(c) for c in self.candidates], "chosen": self.chosen,
                "artifact": self.artifact, "report": report}


PUBLIC_KEYS = ("name", "techniques", "status", "reason", "latency_ms", "size_bytes", "accuracy", "fidelity",
               "metric_value", "speedup", "speedup_ci", "meets_constraints")


def _public(row: dict) -> dict:
    return {k: row.get(k) for k in PUBLIC_KEYS}


@dataclass
class OptimizeResult:
    """What optimize() returns: one DeviceResult per device, plus the plan's skips and the report."""

    model: str
    devices: list[DeviceResult]
    skipped: list[dict]
    constraints: Constraints
    out_dir: Path
    report: Path | None = None
    notes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    budget_reached: bool = False
    metric: str | None = None      # the task metric's name (--metric), if one was given
    threads: int | None = None     # the measurement threads (shown in the plot's title)
    created: str = field(default_factory=lambda: date.today().isoformat())

    def to_json(self) -> dict:
        """One device: exactly DESIGN.md's keys. Several: those keys per device under `devices`."""
        per = [d.to_json(self.model, str(self.report) if self.report else None, self.metric) for d in self.devices]
        if len(per) == 1:
            return per[0]
        return {"devices": per, "model": self.model, "report": str(self.report) if self.report else None}


# --- measuring one model on one device --------------------------------------------------------------

def measure_on(client, path: Path, settings: MeasureSettings, store: ResultsStore, inputs: dict,
               reference: dict | None, labels, want_profile: bool = False, baseline: ModelRef | None = None,
               metric: Metric | None = None) -> dict:
    """Bench, (profile), evaluate one model on one device; returns the numbers and the outputs. With a
    `baseline`, the model is timed in the same loop as it (one inference of each in turn): `pair` holds
    both per-inference times. Without `reference` outputs the model is its own reference (the baseline:
    fidelity 1.0, and the metric's value against itself and the labels)."""
    ref = check_model(path, settings.input_shapes)  # parsed once for the three jobs
    b = bench(ref, client, settings, store, reference=baseline)
    prof = profile(ref, client, settings, store) if want_profile else None
    outputs = evaluate_outputs(ref, inputs, client, settings)
    q = judge(outputs, outputs if reference is None else reference, labels, metric)
    return {"latency_ms": {k: b.latency_ms[k] for k in ("p50", "p90", "p99")}, "cv": b.cv, "flags": b.flags,
            "run_id": b.run_id, "model_digest": b.model_digest, "threads": b.threads, **q,
            "outputs": outputs, "profile": prof, "pair": (b.reference_times_ms, b.times_ms)}


# --- helpers the refinements use --------------------------------------------------------------------

def module_name(onnx_node: str) -> str:
    """The PyTorch module behind a torch.onnx node name: '/features/features.1/conv/conv.0/Conv' ->
    'features.1.conv.0'."""
    parts = [p for p in onnx_node.strip("/").split("/")[:-1] if p]
    if not parts:
        return ""
    full = parts[0]
    for prev, cur in zip(parts, parts[1:]):
        full += cur[len(prev):] if cur.startswith(prev + ".") else "." + cur
    return full


def ratios_from_profile(layers: list[dict], modules: set[str], ratio: float) -> dict[str, float]:
    """Per-layer pruning ratios: layers taking more of the measured time are pruned harder (ratio scaled by
    the square root of time share / mean share, clipped to [0.05, 0.85]); others more lightly."""
    times: dict[str, float] = {}
    for row in layers:
        if row.get("op_type") not in ("Conv", "FusedConv"):
            continue
        for node in row.get("source_nodes") or [row["name"]]:
            name = module_name(node)
            if name in modules:
                times[name] = times.get(name, 0.0) + row["time_ms"] / max(len(row.get("source_nodes") or [1]), 1)
    total = sum(times.values())
    if not times or total <= 0:
        return {}
    mean = total / len(times)
    return {n: round(min(0.85, max(0.05, ratio * math.sqrt(t / mean))), 3) for n, t in times.items()}


# --- the loop ---------------------------------------------------------------------------------------

def _row_from_store(stored: dict) -> dict:
    d = stored["detail"]
    return {"name": stored["name"], "techniques": stored["techniques"], "status": stored["status"],
            "reason": stored["reason"], "latency_ms": ({"p50": stored["p50_ms"], "p90": stored["p90_ms"],
                                                        "p99": stored["p99_ms"]} if stored["p50_ms"] else None),
            "size_bytes": stored["size_bytes"], "accuracy": stored["accuracy"], "fidelity": stored["fidelity"],
            "cv": stored["cv"], "flags": stored["flags"], "path": stored["model_path"],
            "model_digest": stored["model_digest"], "top1_agreement": d.get("top1_agreement"),
            "details": d.get("details", {}), "paired": PairedRounds(stored=ratio_from_json(d.get("paired"))),
            "metric_value": d.get("metric_value"), "fidelity_detail": d.get("fidelity_detail"),
            "resumed": True}


class _Loop:
    """State of one optimize run (kept out of the public function for readability)."""

    def __init__(self, source: Source, devices: list[str], constraints: Constraints, techniques: list[str],
                 out_dir: Path, settings: MeasureSettings, store: ResultsStore, key: str, deadline: float | None,
                 bar: ProgressBar, metric: Metric | None = None, reuse: str = REUSE_ALL) -> None:
        self.source, self.devices, self.constraints, self.metric = source, devices, constraints, metric
        self.techniques, self.out_dir, self.settings, self.store = techniques, out_dir, settings, store
        self.key, self.deadline, self.bar = key, deadline, bar
        self.reuse = reuse   # what an earlier run of the same key may give: REUSE_CHOICES
        self.work = out_dir / "candidates"
        self.work.mkdir(parents=True, exist_ok=True)
        self.inputs = stack_inputs(source.evaluation)
        n = len(next(iter(self.inputs.values())))
        self.labels = None if source.evaluation.labels is None else np.asarray(source.evaluation.labels)[:n]
        self.rows: dict[str, dict[str, dict]] = {d: {} for d in devices}   # device -> name -> row
        self.baseline: dict[str, dict] = {}
        self.reference: dict[str, dict] = {}
        self.layers: dict[str, list[dict]] = {}
        self.built: dict[str, Path] = {}
        self.baseline_ref = check_model(source.baseline, settings.input_shapes)  # every candidate's reference
        self.budget_reached = False

    def over_budget(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.budget_reached = True
        return self.budget_reached

    # baseline ---------------------------------------------------------------------------------------
    def baseline_job(self, device: str):
        ref_path = self.out_dir / f"baseline-outputs-{_safe(device)}.npz"
        stored = {c["name"]: c for c in self.store.candidates(self.key, device)}
        if self.reuse == REUSE_ALL and "baseline" in stored and stored["baseline"]["status"] == "ok" \
                and ref_path.exists():
            def resume(client):
                row = _row_from_store(stored["baseline"])
                row["profile_run_id"] = stored["baseline"]["detail"].get("profile_run_id")
                with np.load(ref_path) as z:
                    self.reference[device] = {k: z[k] for k in z.files}
                self.layers[device] = self.store.layers(stored["baseline"]["detail"].get("profile_run_id") or -1)
                return row
            return resume

        def run(client):
            m = measure_on(client, self.source.baseline, self.settings, self.store, self.inputs, None,
                           self.labels, want_profile=True, metric=self.metric)
            self.reference[device] = m["outputs"]
            np.savez(ref_path, **m["outputs"])
            self.layers[device] = m["profile"].layers
            row = {"name": "baseline", "techniques": [], "status": "ok", "reason": "",
                   "latency_ms": m["latency_ms"], "size_bytes": self.source.baseline.stat().st_size,
                   "accuracy": m["accuracy"], "fidelity": 1.0, "metric_value": m["metric_value"],
                   "cv": m["cv"], "flags": m["flags"],
                   "path": str(self.source.baseline), "model_digest": m["model_digest"]}
            row["profile_run_id"] = m["profile"].run_id
            self._store(device, row, m["run_id"], {"profile_run_id": m["profile"].run_id})
            return row
        return run

    def _store(self, device: str, row: dict, run_id: int | None, extra: dict | None = None) -> None:
        self.store.record_candidate(
            optimize_key=self.key, device_name=device, name=row["name"], techniques=row["techniques"],
            status=row["status"], reason=row.get("reason") or None, model_digest=row.get("model_digest"),
            model_path=row.get("path"), size_bytes=row.get("size_bytes"), latency_ms=row.get("latency_ms"),
            cv=row.get("cv"), flags=row.get("flags") or (), accuracy=row.get("accuracy"),
            fidelity=row.get("fidelity"), run_id=run_id,
            detail={"top1_agreement": row.get("top1_agreement"), "details": row.get("details", {}),
                    "metric_value": row.get("metric_value"), "fidelity_detail": row.get("fidelity_detail"),
                    "paired": ratio_to_json(row["paired"].ratio()) if row.get("paired") else None,
                    **(extra or {})})

    # candidates -------------------------------------------------------------------------------------
    def build(self, cand: plan_mod.Candidate) -> tuple[Path | None, dict, str]:
        """Build one candidate (or reuse an earlier run's complete build); (path, details, error)."""
        path = self.work / f"{cand.name}{cand.suffix}"
        details = plan_mod.read_details(path) if self.reuse != REUSE_NOTHING else None
        if details is not None:
            return path, details, ""
        try:
            details = cand.build(path)
        except Exception as exc:  # a technique that fails on this model fails its candidate only
            log.debug("building %s failed", cand.name, exc_info=True)
            return None, {}, f"could not be built: {type(exc).__name__}: {str(exc)[:300]}"
        plan_mod.write_details(path, cand, details)
        return path, details, ""

    def measure_job(self, device: str, cand: plan_mod.Candidate, path: Path, details: dict):
        def run(client):
            size = path.stat().st_size
            try:
                m = measure_on(client, path, self.settings, self.store, self.inputs, self.reference[device],
                               self.labels, baseline=self.baseline_ref, metric=self.metric)
            except AgentUnavailable:
                raise  # the scheduler retries it on another agent of the device's class
            except FarmError as exc:
                row = {"name": cand.name, "techniques": cand.techniques, "status": "failed",
                       "reason": f"measurement failed: {exc}", "size_bytes": size, "path": str(path),
                       "details": details}
                self._store(device, row, None)
                return row
            row = {"name": cand.name, "techniques": cand.techniques, "status": "ok", "reason": "",
                   "latency_ms": m["latency_ms"], "size_bytes": size, "accuracy": m["accuracy"],
                   "fidelity": m["fidelity"], "top1_agreement": m["top1_agreement"], "cv": m["cv"],
                   "metric_value": m["metric_value"], "fidelity_detail": m["fidelity_detail"],
                   "flags": m["flags"], "path": str(path), "model_digest": m["model_digest"], "details": details,
                   "paired": PairedRounds()}
            row["paired"].add(*m["pair"])
            self._store(device, row, m["run_id"])
            return row
        return run

    def finished(self, device: str, name: str, path: Path | None) -> dict | None:
        """A measurement of this exact file already in the store (resume)."""
        if self.reuse != REUSE_ALL:
            return None
        for c in self.store.candidates(self.key, device):
            if c["name"] == name and c["status"] == "ok" and path is not None and path.exists() \
                    and c["model_digest"] == file_digest(path) and c["detail"].get("paired"):
                return _row_from_store(c)
        return None

    def run_candidates(self, scheduler: Scheduler, cands: list[plan_mod.Candidate]) -> None:
        """Build every candidate first (training would disturb a local device's timing), then measure."""
        ready: list[tuple[plan_mod.Candidate, Path, dict]] = []
        for cand in cands:
            if self.over_budget():
                for d in self.devices:
                    self.rows[d][cand.name] = _skipped(cand, "not made: the --budget-minutes time ran out")
                continue
            self.bar.note(f"building {cand.name} ({' + '.join(cand.techniques)})")
            path, details, error = self.build(cand)
            if path is None:
                for d in self.devices:
                    row = {"name": cand.name, "techniques": cand.techniques, "status": "failed", "reason": error}
                    self.rows[d][cand.name] = row
                    self._store(d, row, None)
                self.bar.advance(len(self.devices), f"{cand.name}: {error}")
                continue
            self.built[cand.name] = path
            ready.append((cand, path, details))
        futures = []
        for cand, path, details in ready:
            for d in self.devices:
                done = self.finished(d, cand.name, path)
                if done is not None:
                    self.rows[d][cand.name] = done
                    self.bar.advance(1, f"{cand.name} on {d}: measured by an earlier run (resumed)")
                    continue
                if self.over_budget():
                    self.rows[d][cand.name] = _skipped(cand, "not measured: the --budget-minutes time ran out")
                    self.bar.advance(1, f"{cand.name} on {d}: skipped (budget)")
                    continue
                futures.append((d, cand, scheduler.submit(d, cand.name, self.measure_job(d, cand, path, details))))
        for d, cand, fut in futures:
            while True:
                try:
                    row = fut.result(timeout=0.5)
                    break
                except JobLost as exc:
                    row = {"name": cand.name, "techniques": cand.techniques, "status": "failed",
                           "reason": f"measurement failed: {exc}", "size_bytes": self.built[cand.name].stat().st_size,
                           "path": str(self.built[cand.name]), "details": {}}
                    self._store(d, row, None)
                    break
                except FutureTimeout:
                    _, running, _ = scheduler.counts()
                    self.bar.update(self.bar.done, running, message=", ".join(
                        f"measuring {name} on {dev}" for dev, name in list(scheduler.running.items())))
            self.rows[d][cand.name] = row
            self.bar.advance(1, _describe(cand.name, d, row, self.baseline[d]), running=scheduler.counts()[1])

    def confirm(self, scheduler: Scheduler, rounds: int) -> None:
        """Time every candidate that could still be faster (its interval reaches the noise margin) in
        `rounds` more loops paired with the baseline, the order within the pair swapped every other round;
        its speedup is then the median of the paired ratios of all its loops."""
        jobs = []
        for d in self.devices:
            contenders = [r for r in self.rows[d].values() if r["status"] == "ok" and r.get("paired")
                          and could_be_faster(r["paired"].ratio())]
            if rounds <= 0 or not contenders:
                continue
            for rnd in range(rounds):
                swapped = rnd % 2 == 0
                for row in (contenders[::-1] if swapped else contenders):
                    jobs.append((d, row, scheduler.submit(d, f"again {row['name']}", self._paired_job(row, swapped))))
            self.bar.total += rounds * len(contenders)
            self.bar.note(f"timing {len(contenders)} contender(s) on {d} again, each paired with the baseline "
                          f"({rounds} more loops)")
        for d, row, fut in jobs:
            try:
                this = row["paired"].add(*fut.result())
            except JobLost as exc:
                self.bar.advance(1, f"again: {row['name']} on {d}: not timed ({exc})")
                continue
            self.bar.advance(1, f"again: {row['name']} on {d}, paired with the baseline: {this:.2f}x in this loop",
                             running=scheduler.counts()[1])
        for d, row in {(d, id(row)): (d, row) for d, row, _ in jobs}.values():
            if row["paired"].rounds:
                row["latency_ms"] = row["paired"].least_disturbed()
                self._store(d, row, None)

    def _paired_job(self, row: dict, swapped: bool):
        """One loop of the candidate and the baseline; swapped: the baseline is the timed model and the
        candidate its reference (so neither always runs first)."""
        cand = check_model(Path(row["path"]), self.settings.input_shapes)

        def run(client):
            return paired_loop(client, self.baseline_ref, cand, self.settings, self.store, swapped)
        return run

    # choice -----------------------------------------------------------------------------------------
    def decide(self, device: str) -> DeviceResult:
        base = self.baseline[device]
        rows = list(self.rows[device].values())
        for row in rows:
            row.setdefault("meets_constraints", False)
            ratio = row["paired"].ratio() if row.get("paired") else None
            row["speedup"] = round(ratio.median, 4) if ratio else None
            row["speedup_ci"] = ratio.interval if ratio else None
            if row["status"] != "ok":
                row["meets_constraints"] = False
                continue
            fails = self.constraints.failures(row, base)
            slow = speed_failure(ratio) if ratio else "not timed paired with the baseline"
            row["speed_failure"] = slow
            if slow:
                fails.insert(0, slow)
            row["meets_constraints"] = not fails
            if fails:
                row["status"], row["reason"] = "rejected", "; ".join(fails)
        base["latency_ms"] = least_disturbed_baseline(base["latency_ms"],
                                                      [r["paired"] for r in rows if r.get("paired")])
        base.update(speedup=1.0, speedup_ci=[1.0, 1.0],
                    meets_constraints=not self.constraints.failures(base, base))
        ok = [r for r in rows if r["meets_constraints"]]
        if ok:
            best = max(ok, key=lambda r: r["speedup"])
            artifact = self.out_dir / f"chosen-{_safe(device)}.onnx"
            artifact.write_bytes(Path(best["path"]).read_bytes())
            best["reason"] = (f"chosen: fastest candidate meeting every constraint "
                              f"({best['paired'].ratio().text()} paired with the baseline)")
            return DeviceResult(device, base, rows, best["name"], str(artifact))
        near = closest(rows, self.constraints, base)
        failure = (f"no candidate meets the constraints on {device}. Closest: " + " | ".join(near) if near
                   else f"no candidate could be measured on {device}")
        return DeviceResult(device, base, rows, None, None, failure)


def _conv_modules(model) -> set[str]:
    import torch

    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _skipped(cand: plan_mod.Candidate, reason: str) -> dict:
    return {"name": cand.name, "techniques": cand.techniques, "status": "failed", "reason": reason}


def _describe(name: str, device: str, row: dict, base: dict) -> str:
    if row["status"] != "ok":
        return f"{name} on {device}: {row['status']}: {row.get('reason', '')}"
    p50 = row["latency_ms"]["p50"]
    q = (f"accuracy {row['accuracy']:.4f}" if row.get("accuracy") is not None
         else f"fidelity {row['fidelity']:.4f}")
    ratio = row["paired"].ratio() if row.get("paired") else None
    speed = f"{ratio.text()} paired with the baseline" if ratio else f"baseline {base['latency_ms']['p50']:.3f} ms"
    return f"{name} on {device}: p50 {p50:.3f} ms ({speed}), {q}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def optimize(model: str | None = None, devices: list[str] | tuple[str, ...] = (LOCAL,),
             constraints: Constraints | None = None, calibration_data=None, eval_data=None, preprocess=None,
             techniques: list[str] | str | None = None, budget_minutes: float | None = None,
             out_dir: Path | str = "edgefarm-optimize", settings: MeasureSettings | None = None,
             store: ResultsStore | Path | str | None = None, inventory: Path | None = None,
             progress=None, confirm_rounds: int = CONFIRM_ROUNDS, tflite: bool = False,
             metric=None, reuse: str = REUSE_ALL) -> OptimizeResult:
    """Optimize `model` (an ONNX path or example:NAME; None = the built-in PyTorch example) for each device
    and choose, per device, the fastest candidate meeting every constraint. `metric`: a task metric
    (`"top1"`, `"mask-iou@0.5"`, `"module:function"` or a callable (reference outputs, candidate outputs,
    labels) -> float, higher is better) judged on every candidate and limited by `Constraints.min_metric` /
    `max_metric_drop`. `reuse`: what an earlier run with the same key (model, data, techniques, settings)
    gives: "all" (its builds and measurements: a rerun resumes), "builds" (`--remeasure`: time and
    evaluate again) or "nothing" (`--fresh`: build and measure everything again). See the README."""
    from controller.optimization.report import write_reports

    started = time.monotonic()
    if reuse not in REUSE_CHOICES:
        raise FarmError(f"reuse={reuse!r} is not one of {', '.join(REUSE_CHOICES)}")
    deadline = started + budget_minutes * 60 if budget_minutes else None
    techniques = plan_mod.parse_techniques(techniques)
    task_metric = metric_or_error(metric)   # a bad --metric fails before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    devices = list(dict.fromkeys(devices or [LOCAL]))
    if model is None and (calibration_data is not None or eval_data is not None):
        raise FarmError("the built-in example brings its own data (digits: training images to calibrate, the "
                        "validation split to evaluate); --calibration-data and --eval-data go with an ONNX MODEL")
    if tflite:
        if model is not None:
            raise FarmError("--tflite converts the PyTorch candidates with litert-torch; it applies to the built-in "
                            "PyTorch example (run without MODEL); give a .tflite file as MODEL to `farmctl bench`")
        from optimizers.torch_helpers import tflite_converter

        try:
            tflite_converter()
        except Exception as exc:  # OptimizerError: say what to install before any work
            raise FarmError(str(exc)) from None
    inv = load_inventory(inventory)
    for d in devices:
        resolve_devices(d, inv)  # unknown names fail before any work
    bar = ProgressBar(progress)
    try:   # the bar's heartbeat thread ends with it, whatever fails here
        source = (example_source(out, progress=lambda s: bar.note(f"training the built-in example: {s}"))
                  if model is None else onnx_source(model, calibration_data, eval_data, preprocess,
                                                    (settings.input_shapes if settings else None)))
        constraints = (constraints or Constraints()).resolved(source.labelled, task_metric)
        settings = replace(settings or MeasureSettings(), input_shapes=source.input_shapes)
        key = optimize_key(source, techniques, settings.as_dict() | ({"metric": task_metric.name} if task_metric
                                                                     else {}))
        db = store if isinstance(store, ResultsStore) else ResultsStore(store or "edgefarm-results.db")
    except BaseException:
        bar.close()
        raise
    try:
        with ExitStack() as stack:
            pools = {d: connect_pool(d, inv, stack, progress=bar.note) for d in devices}
            scheduler = stack.enter_context(Scheduler(pools, on_event=bar.note))
            loop = _Loop(source, devices, constraints, techniques, out, settings, db, key, deadline, bar, task_metric,
                         reuse)
            bar.total = len(devices)
            bar.update(0, len(devices), message="measuring and profiling the baseline")
            futures = {d: scheduler.submit(d, "baseline", loop.baseline_job(d)) for d in devices}
            for d, fut in futures.items():
                loop.baseline[d] = fut.result()
                bar.advance(1, f"baseline on {d}: p50 {loop.baseline[d]['latency_ms']['p50']:.3f} ms")
            first = devices[0]
            modules = _conv_modules(source.torch.model) if source.torch else set()
            cands, skipped = plan_mod.plan(
                source, techniques, loop.work,
                layer_ratios=lambda r: ratios_from_profile(loop.layers[first], modules, r), tflite=tflite,
                progress=bar.note)
            bar.total += len(cands) * len(devices)
            loop.run_candidates(scheduler, [c for c in cands if not c.refinement])
            skipped += refine.mixed_precision(loop, scheduler, bar)
            skipped += refine.measured_int8(loop, scheduler, bar)
            loop.confirm(scheduler, confirm_rounds)
            results = [loop.decide(d) for d in devices]
    finally:
        bar.close()
        if db is not store:
            db.close()
    result = OptimizeResult(model=source.name, devices=results, skipped=skipped, constraints=constraints,
                            out_dir=out, notes=source.notes, wall_seconds=round(time.monotonic() - started, 1),
                            budget_reached=loop.budget_reached, metric=task_metric.name if task_metric else None,
                            threads=settings.threads)
    result.report = write_reports(result)
    return result


def result_summary(result: OptimizeResult) -> str:
    """A few lines for a person: the choice per device, or why there is none."""
    lines = []
    for d in result.devices:
        if d.chosen:
            row = next(r for r in d.candidates if r["name"] == d.chosen)
            q = (f"accuracy {row['accuracy']:.4f} (baseline {d.baseline['accuracy']:.4f})"
                 if row.get("accuracy") is not None else f"fidelity {row['fidelity']:.4f}")
            lines.append(f"{d.device}: chose {d.chosen}: p50 {row['latency_ms']['p50']:.3f} ms vs "
                         f"{d.baseline['latency_ms']['p50']:.3f} ms ({row['speedup']:.2f}x), {q}, "
                         f"{row['size_bytes'] / 1e6:.2f} MB -> {d.artifact}")
        else:
            lines.append(f"{d.device}: {d.failure}")
    resumed = sum(1 for d in result.devices for r in [d.baseline, *d.candidates] if r.get("resumed"))
    if resumed:
        lines.append(f"{resumed} measurement(s) came from the store: an earlier run with the same model, data, "
                     "techniques and settings. --remeasure times and evaluates them again (builds reused); "
                     "--fresh builds and measures everything again.")
    if result.report:
        lines.append(f"report: {result.report}")
    return "\n".join(lines)

