"""Measuring one model on one device for `farmctl optimize`: its timing paired with the baseline, its
profile when asked, its outputs and their quality; and the helpers that turn a measurement or a stored record
into a row of the comparison."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.errors import AgentUnavailable, FarmError
from controller.measure.api import ProfileResult, bench, evaluate_outputs, profile
from controller.measure.paired import PairedRounds, ratio_from_json
from controller.measure.preflight import ModelRef, check_model
from controller.measure.settings import MeasureSettings
from controller.measure.store import CandidateRecord, ResultsStore
from controller.optimization.quality import Quality, judge
from controller.optimization.rows import CandidateRow
from optimizers.evaluation.metrics import Metric


@dataclass
class Measurement:
    """One model measured on one device: its timing (paired with the baseline when one was given), its
    quality from its outputs, the outputs themselves, and its profile when asked for."""

    latency_ms: dict[str, float]
    cv: float
    flags: list[str]
    run_id: int
    model_digest: str
    threads: int
    quality: Quality
    outputs: dict
    profile: ProfileResult | None
    pair: tuple[list[float] | None, list[float]]   # (baseline, this model) per-inference times
    profile_error: str = ""                         # why the profile asked for is missing (the job failed)


@dataclass
class EvalSet:
    """What every model of a run is evaluated on: the stacked inputs, their labels, the task metric."""

    inputs: dict
    labels: np.ndarray | None = None
    metric: Metric | None = None


def measure_on(client, path: Path, settings: MeasureSettings, store: ResultsStore, data: EvalSet,
               reference: dict | None = None, *, want_profile: bool = False,
               baseline: ModelRef | None = None) -> Measurement:
    """Bench, (profile), evaluate one model on one device. With a `baseline`, the model is timed in the
    same loop as it (one inference of each in turn). Without `reference` outputs the model is its own
    reference (the baseline: fidelity 1.0, and the metric's value against itself and the labels)."""
    ref = check_model(path, settings.input_shapes)  # parsed once for the three jobs
    b = bench(ref, client, settings, store, reference=baseline)
    prof, profile_error = None, ""
    if want_profile:
        try:   # a profile that fails costs the profile, not the measurement
            prof = profile(ref, client, settings, store)
        except AgentUnavailable:
            raise
        except FarmError as exc:
            profile_error = str(exc)
    outputs = evaluate_outputs(ref, data.inputs, client, settings)
    q = judge(outputs, outputs if reference is None else reference, data.labels, data.metric)
    return Measurement({k: b.latency_ms[k] for k in ("p50", "p90", "p99")}, b.cv, list(b.flags), b.run_id,
                       b.model_digest, b.threads, q, outputs, prof, (b.reference_times_ms, b.times_ms),
                       profile_error)


def row_from_store(stored: CandidateRecord) -> CandidateRow:
    d = stored.detail
    row = CandidateRow(stored.name, stored.techniques, stored.status, stored.reason, stored.latency_ms,
                       stored.size_bytes, stored.accuracy, stored.fidelity, d.get("top1_agreement"),
                       d.get("metric_value"), d.get("fidelity_detail") or {}, stored.cv, stored.flags,
                       stored.model_path, stored.model_digest, d.get("details", {}),
                       PairedRounds(stored=ratio_from_json(d.get("paired")),
                                    stored_p50s=tuple(d["paired_p50s"]) if d.get("paired_p50s") else None),
                       d.get("profile_run_id"))
    row.resumed = True
    return row


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def describe(device: str, row: CandidateRow, base: CandidateRow) -> str:
    """One progress line for a measured row."""
    if row.status != "ok":
        return f"{row.name} on {device}: {row.status}: {row.reason}"
    q = f"accuracy {row.accuracy:.4f}" if row.accuracy is not None else f"fidelity {row.fidelity:.4f}"
    ratio = row.ratio()
    speed = f"{ratio.text()} paired with the baseline" if ratio else f"baseline {base.p50:.3f} ms"
    return f"{row.name} on {device}: p50 {row.p50:.3f} ms ({speed}), {q}"
