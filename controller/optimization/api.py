"""`farmctl optimize` from Python: measure the baseline on each device, make candidates, measure and
evaluate each one on the device(s), refine from the measurements, and choose the fastest candidate that
meets every constraint (docs/optimize.md). Every number goes into the store as it arrives, so a killed
run resumes where it stopped."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path

from controller.errors import FarmError, UsageError
from controller.fleet.connect import connect_pool
from controller.fleet.inventory import LOCAL, load_inventory, resolve_devices
from controller.fleet.scheduler import Scheduler
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from controller.optimization import candidates as plan_mod
from controller.optimization import refine
from controller.optimization.candidates import REUSE_ALL, REUSE_CHOICES
from controller.optimization.constraints import Constraints
from controller.optimization.guided import conv_modules, ratios_from_profile
from controller.optimization.plan import plan as plan_candidates
from controller.optimization.quality import metric_or_error
from controller.optimization.report import write_reports
from controller.optimization.results import OptimizeResult
from controller.optimization.pipelining import choose_schedule
from controller.optimization.run import OptimizeRun, RunPlan
from controller.optimization.sources import Source, example_source, onnx_source, optimize_key
from controller.progress import ProgressBar
from optimizers.onnx_torch.recovery import DEFAULT_MINUTES, RecoveryOptions
from optimizers.pytorch.helpers import tflite_converter

CONFIRM_ROUNDS = 2            # extra paired loops for each candidate that could be faster than the baseline

__all__ = ["Constraints", "OptimizeOptions", "optimize", "CONFIRM_ROUNDS"]


@dataclass(kw_only=True)
class OptimizeOptions:
    """How optimize() works, beyond the model, the devices and the constraints. `metric`: a task metric
    (`"top1"`, `"mask-iou@0.5"`, `"module:function"` or a callable (reference outputs, candidate outputs,
    labels) -> float, higher is better) judged on every candidate and limited by `Constraints.min_metric` /
    `max_metric_drop`. `reuse`: what an earlier run with the same key (model, data, techniques, settings)
    gives: "all" (its builds and measurements: a rerun resumes), "builds" (`--remeasure`: time and
    evaluate again) or "nothing" (`--fresh`: build and measure everything again)."""

    calibration_data: object = None
    eval_data: object = None
    preprocess: object = None                  # optimizers.ImagePreprocess for image folders
    techniques: list[str] | str | None = None  # None: every technique that applies
    budget_minutes: float | None = None
    out_dir: Path | str = "edgefarm-optimize"
    settings: MeasureSettings | None = None
    store: ResultsStore | Path | str | None = None
    inventory: Path | None = None
    progress: object = None                    # a callable taking each progress line; None: the terminal
    confirm_rounds: int = CONFIRM_ROUNDS
    tflite: bool = False
    metric: object = None
    reuse: str = REUSE_ALL
    allow_mixed: bool = False                  # a class's agents share its jobs even if their fingerprints differ
    recovery_minutes: float | None = None      # an ONNX model's pruned candidates: recovery time each (None: 8)


def _options(options: OptimizeOptions | None, overrides: dict) -> OptimizeOptions:
    known = {f.name for f in fields(OptimizeOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise FarmError(f"optimize() has no option {', '.join(unknown)}; the options are: {', '.join(sorted(known))}")
    opts = replace(options or OptimizeOptions(), **overrides)
    if opts.reuse not in REUSE_CHOICES:
        raise FarmError(f"reuse={opts.reuse!r} is not one of {', '.join(REUSE_CHOICES)}")
    return opts


def _check_before_work(model: str | None, opts: OptimizeOptions) -> None:
    """Mistakes that would otherwise surface after minutes of training fail first."""
    if model is None and (opts.calibration_data is not None or opts.eval_data is not None):
        raise UsageError("the built-in example brings its own data (digits: training images to calibrate, the "
                        "validation split to evaluate); --calibration-data and --eval-data go with an ONNX MODEL")
    if opts.recovery_minutes is not None and not opts.recovery_minutes > 0:
        raise UsageError(f"--recovery-minutes must be a positive number of minutes, got {opts.recovery_minutes}")
    if opts.tflite:
        if model is not None:
            raise UsageError("--tflite converts the PyTorch candidates with litert-torch; it applies to the built-in "
                            "PyTorch example (run without MODEL); give a .tflite file as MODEL to `farmctl bench`")
        try:
            tflite_converter()
        except Exception as exc:  # OptimizerError: say what to install before any work
            raise FarmError(str(exc)) from None


def _source(model: str | None, opts: OptimizeOptions, out: Path, bar: ProgressBar) -> Source:
    if model is None:
        return example_source(out, progress=lambda s: bar.note(f"training the built-in example: {s}"))
    return onnx_source(model, opts.calibration_data, opts.eval_data, opts.preprocess,
                       opts.settings.input_shapes if opts.settings else None)


def optimize(model: str | None = None, devices: list[str] | tuple[str, ...] = (LOCAL,),
             constraints: Constraints | None = None, *, options: OptimizeOptions | None = None,
             **overrides) -> OptimizeResult:
    """Optimize `model` (an ONNX path or example:NAME; None = the built-in PyTorch example) for each device
    and choose, per device, the fastest candidate meeting every constraint. Options come as an
    OptimizeOptions, or as its fields by keyword (`optimize("m.onnx", techniques="int8", out_dir=...)`)."""
    opts = _options(options, overrides)
    started = time.monotonic()
    techniques = plan_mod.parse_techniques(opts.techniques)
    task_metric = metric_or_error(opts.metric)   # a bad --metric fails before any work
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    devices = list(dict.fromkeys(devices or [LOCAL]))
    _check_before_work(model, opts)
    inv = load_inventory(opts.inventory)
    for d in devices:
        resolve_devices(d, inv)  # unknown names fail before any work
    bar = ProgressBar(opts.progress)
    try:   # the bar's heartbeat thread ends with it, whatever fails here
        source = _source(model, opts, out, bar)
        constraints = (constraints or Constraints()).resolved(source.labelled, task_metric)
        settings = replace(opts.settings or MeasureSettings(), input_shapes=source.input_shapes)
        key = optimize_key(source, techniques, settings.as_dict() | ({"metric": task_metric.name} if task_metric
                                                                     else {})
                           | ({"recovery_minutes": opts.recovery_minutes} if opts.recovery_minutes else {}))
        db = opts.store if isinstance(opts.store, ResultsStore) else ResultsStore(opts.store or "edgefarm-results.db")
    except BaseException:
        bar.close()
        raise
    plan = RunPlan(source, devices, constraints, techniques, out, settings, db, key,
                   started + opts.budget_minutes * 60 if opts.budget_minutes else None, task_metric, opts.reuse)
    try:
        run, skipped = _run(plan, inv, bar, opts)
    finally:
        bar.close()
        if db is not opts.store:
            db.close()
    result = OptimizeResult(model=source.name, devices=run.results,
                            skipped=skipped, constraints=constraints, out_dir=out, notes=source.notes, lost=run.lost,
                            wall_seconds=round(time.monotonic() - started, 1), budget_reached=run.budget_reached,
                            metric=task_metric.name if task_metric else None, threads=settings.threads)
    result.report = write_reports(result)
    return result


REFINEMENTS = ("mixed-precision", "int8-measured")   # candidates made from the measurements (refine.py)


def _run(plan: RunPlan, inv, bar: ProgressBar, opts: OptimizeOptions) -> tuple[OptimizeRun, list[dict]]:
    """Connect to the devices, measure the baseline, plan, measure, refine, confirm and decide."""
    devices = plan.devices
    with ExitStack() as stack:
        pools = {d: connect_pool(d, inv, stack, progress=bar.note) for d in devices}
        scheduler = stack.enter_context(Scheduler(pools, on_event=bar.note, allow_mixed=opts.allow_mixed))
        run = OptimizeRun(plan, bar)
        first = devices[0]
        modules = conv_modules(plan.source.torch.model) if plan.source.torch else set()
        cands, skipped = plan_candidates(   # (the profile-guided ratios are read when those candidates build)
            plan.source, plan.techniques, run.work,
            layer_ratios=lambda r: ratios_from_profile(run.layers[first], modules, r), tflite=opts.tflite,
            progress=bar.note, recovery=RecoveryOptions(minutes=opts.recovery_minutes or DEFAULT_MINUTES))
        # the baseline on each device, then each candidate's build and one job per device: known from the start
        refinements = [t for t in REFINEMENTS if t in plan.techniques]   # built or skipped once measured
        bar.total = len(devices) + (len(cands) + len(refinements)) * (1 + len(devices))
        run.schedule = choose_schedule(pools)
        bar.note(run.schedule.reason)
        bar.update(0, len(devices), message="measuring and profiling the baseline")
        futures = {d: scheduler.submit(d, "baseline", run.baseline_job(d)) for d in devices}
        for d, fut in futures.items():
            run.baseline[d] = fut.result()
            bar.advance(1, f"baseline on {d}: p50 {run.baseline[d].p50:.3f} ms")
        # how many contenders are timed again is known only once every candidate is measured
        bar.then = "timing the contenders again" if opts.confirm_rounds > 0 else ""
        run.run_candidates(scheduler, [c for c in cands if not c.refinement])
        for step in (refine.mixed_precision, refine.measured_int8):
            skips = step(run, scheduler, bar)
            for skip in skips:   # its steps were counted from the start: done, as skipped
                bar.advance(1 + len(devices), f"{skip['technique']}: skipped ({skip['reason']})")
            skipped += skips
        run.confirm(scheduler, opts.confirm_rounds)
        run.results = [run.decide(d) for d in devices]
    return run, skipped
