"""The candidates `farmctl optimize` makes only after the first measurements ask for them: mixed precision
(INT8 breaks the quality constraint while running faster) and int8-measured (the fastest INT8 with the
layers the device measured slower in INT8 kept float). Each takes the optimize run's loop
(controller.optimization.run.OptimizeRun), adds its candidate there, or returns why it was skipped."""

from __future__ import annotations

from pathlib import Path

from controller.errors import FarmError
from controller.fleet.scheduler import JobLost, Scheduler
from controller.measure.api import profile
from controller.optimization import candidates as plan_mod
from controller.optimization.candidates import REUSE_NOTHING
from controller.optimization.constraints import DEFAULT_FIDELITY
from controller.optimization.rows import CandidateRow
from controller.optimization.run import OptimizeRun
from controller.progress import ProgressBar
from optimizers.errors import OptimizerError
from optimizers.graph.layer_names import node_times
from optimizers.quantization.measured_precision import MeasuredPrecisionOptimizer, least_disturbed
from optimizers.quantization.mixed_precision import MixedPrecisionOptimizer

PROFILE_ROUNDS = 2   # profiles of each model for int8-measured, alternating


def _static_int8(loop: OptimizeRun, device: str) -> list[CandidateRow]:
    """The device's measured INT8 static candidates (made from the baseline file, not a pruned model)."""
    return [r for n, r in loop.rows[device].items() if n.startswith("int8-") and n != "int8-dynamic"
            and r.status == "ok"]


def _faster(rows: list[CandidateRow]) -> list[CandidateRow]:
    return [r for r in rows if r.ratio() and r.ratio().median > 1.0]


def _threshold(loop: OptimizeRun) -> tuple[float, str]:
    """(threshold, metric) of the run's quality constraint, as MixedPrecisionOptimizer takes it."""
    c = loop.constraints
    base = loop.baseline[loop.devices[0]]
    if c.max_accuracy_drop is not None and base.accuracy:
        return max(1e-3, min(1.0, (base.accuracy - c.max_accuracy_drop / 100) / base.accuracy)), "accuracy"
    return (c.min_fidelity or DEFAULT_FIDELITY), "cosine"


def _quant_options(row: CandidateRow) -> tuple[str, dict]:
    """(calibration algorithm, Quantizer options) an INT8 candidate was built with."""
    options = row.details.get("options", {})
    return row.techniques[1], {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _built(out: Path) -> dict:
    raise FarmError(f"{out.name} should have been reused from an earlier run's build")


def mixed_precision(loop: OptimizeRun, scheduler: Scheduler, bar: ProgressBar) -> list[dict]:
    """When every INT8 static candidate breaks the accuracy/fidelity constraint while running faster than
    the baseline, keep in float the layers with the most error per measured millisecond."""
    if "mixed-precision" not in loop.techniques:
        return []
    first = loop.devices[0]
    base = loop.baseline[first]
    int8 = _static_int8(loop, first)
    if not int8:
        return [{"technique": "mixed-precision", "reason": "it refines INT8 static, and no INT8 static candidate "
                                                           "was measured (add int8 to --techniques)"}]
    fast = _faster(int8)
    if not fast:
        return [{"technique": "mixed-precision", "reason": "INT8 static ran slower than the baseline on "
                                                           f"{first}: keeping layers in float cannot help"}]
    if not all(loop.constraints.quality_failed(r, base) for r in fast):
        return [{"technique": "mixed-precision", "reason": "an INT8 static candidate already met the "
                                                           "accuracy/fidelity constraint"}]
    if loop.over_budget():
        return [{"technique": "mixed-precision", "reason": "the --budget-minutes time ran out"}]
    best = max(fast, key=lambda r: (r.accuracy or 0, r.fidelity or 0))
    algorithm, options = _quant_options(best)
    threshold, metric = _threshold(loop)
    times = node_times(loop.layers[first])
    source = loop.source

    def build(out: Path) -> dict:
        opt = MixedPrecisionOptimizer(accuracy_threshold=threshold, metric=metric, algorithm=algorithm,
                                      layer_times_ms=times, max_eval_samples=256, **options)
        res = opt.optimize(source.baseline, source.calibration, source.evaluation,
                           labels=source.evaluation.labels, output=out,
                           progress=lambda s: bar.update(bar.done, 0, message=f"mixed precision: {s}"))
        return {"threshold": threshold, "metric": metric, "algorithm": algorithm, "changes": res.record.changes,
                "notes": res.record.notes, "layer_times_from": first, "refines": best.name}

    cand = plan_mod.Candidate(f"mixed-int8-{algorithm}", ["int8", algorithm, "mixed-precision"], build,
                              refinement=True)
    loop.run_candidates(scheduler, [cand])
    return []


def measured_int8(loop: OptimizeRun, scheduler: Scheduler, bar: ProgressBar) -> list[dict]:
    """int8-measured: profile the fastest INT8 static candidate and the baseline on the first device, back
    to back, map the INT8 rows to the float layers, and keep float the layers INT8 ran slower there (then,
    if the quality constraint needs it, those losing most fidelity per measured ms saved)."""
    if "int8-measured" not in loop.techniques:
        return []
    first = loop.devices[0]
    static = _static_int8(loop, first)
    fast = _faster(static)
    if not fast:
        return [{"technique": "int8-measured", "reason": f"no INT8 static candidate ran faster than the baseline on "
                                                         f"{first}" if static else "it refines INT8 static, and no "
                                                         "INT8 static candidate was measured (add int8 to "
                                                         "--techniques)"}]
    if loop.over_budget():
        return [{"technique": "int8-measured", "reason": "the --budget-minutes time ran out"}]
    best = max(fast, key=lambda r: r.ratio().median)
    int8_path = Path(best.path)
    algorithm, options = _quant_options(best)
    if loop.reuse != REUSE_NOTHING and plan_mod.read_details(loop.work / "int8-measured.onnx") is not None:
        # built by an earlier run: no new profiles; measured if need be (its steps are counted from the start)
        loop.run_candidates(scheduler, [plan_mod.Candidate("int8-measured", ["int8", algorithm, "measured per "
                                                                             "layer"], _built, refinement=True)])
        return []
    bar.note(f"int8-measured: profiling {best.name} and the baseline on {first}")

    def profiles(client) -> tuple[list[dict], list[dict]]:
        rounds: dict[str, list[list[dict]]] = {"float": [], "int8": []}
        for _ in range(PROFILE_ROUNDS):   # alternately, so that both see the machine's states alike
            rounds["int8"].append(profile(str(int8_path), client, loop.settings, loop.store).layers)
            rounds["float"].append(profile(str(loop.source.baseline), client, loop.settings, loop.store).layers)
        return least_disturbed(rounds["float"]), least_disturbed(rounds["int8"])

    threshold, metric = _threshold(loop)
    source = loop.source
    try:
        float_rows, int8_rows = scheduler.submit(first, "int8-measured profiles", profiles).result()
        opt = MeasuredPrecisionOptimizer(float_rows, int8_rows, int8_path, accuracy_threshold=threshold,
                                         metric=metric, algorithm=algorithm, max_eval_samples=256, **options)
    except (FarmError, JobLost, OptimizerError) as exc:   # the run keeps what it measured
        return [{"technique": "int8-measured", "reason": f"profiling {best.name} and the baseline on {first} "
                                                         f"failed: {exc}"}]
    if not opt.slower and not loop.constraints.quality_failed(best, loop.baseline[first]):
        return [{"technique": "int8-measured", "reason": f"no layer of {best.name} ran slower in INT8 than in "
                                                         f"float on {first} by enough to matter, and it meets the "
                                                         "quality constraint: the result would be the same file"}]

    def build(out: Path) -> dict:
        res = opt.optimize(source.baseline, source.calibration, source.evaluation,
                           labels=source.evaluation.labels, output=out,
                           progress=lambda s: bar.update(bar.done, 0, message=f"int8-measured: {s}"))
        return {"refines": best.name, "measured_on": first, "measured_slower_in_int8": opt.slower,
                "threshold": threshold, "metric": metric, "changes": res.record.changes,
                "notes": res.record.notes, "timings": [t.to_json() for t in opt.timings[:20]]}

    cand = plan_mod.Candidate("int8-measured", ["int8", algorithm, "measured per layer"], build, refinement=True)
    loop.run_candidates(scheduler, [cand])
    return []
