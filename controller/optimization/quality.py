"""How a candidate's quality is measured in `farmctl optimize`: accuracy with labels, fidelity against the
baseline's outputs on the same device (cosine per output over the whole set, so an output-identical model
scores exactly 1.0 even where reference outputs are all zeros), and an optional task metric (`--metric`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from controller.errors import FarmError, UsageError
from optimizers.evaluation.evaluate import compare_outputs
from optimizers.evaluation.metrics import Metric, MetricError, resolve_metric

MAX_EVAL_ROWS = 1000


def metric_or_error(spec) -> Metric | None:
    """The task metric of `--metric` / `metric=` (None: none), or a UsageError saying what is wrong."""
    if spec is None:
        return None
    try:
        return resolve_metric(spec)
    except MetricError as exc:
        raise UsageError(str(exc)) from None   # --metric names no usable metric


def stack_inputs(dataset) -> dict[str, np.ndarray]:
    """All evaluation feeds as one stack per input (the agent runs batch-1 models sample by sample)."""
    names = list(dataset.feeds[0])
    try:
        stacked = {n: np.concatenate([f[n] for f in dataset.feeds]) for n in names}
    except ValueError as exc:
        raise FarmError(f"the evaluation samples have different shapes ({exc}); give samples of one shape") from None
    rows = len(next(iter(stacked.values())))
    return {n: a[:MAX_EVAL_ROWS] for n, a in stacked.items()} if rows > MAX_EVAL_ROWS else stacked


def _per_sample(outputs: dict[str, np.ndarray], n: int) -> list[list[np.ndarray]]:
    arrays = [np.asarray(a) for a in outputs.values()]
    if all(a.ndim and len(a) % n == 0 for a in arrays):
        return [[a.reshape(n, -1)[i] for a in arrays] for i in range(n)]
    return [arrays]


@dataclass
class Quality:
    """A model's quality from its outputs on the device: accuracy (with labels), fidelity and top-1
    agreement against the baseline's outputs, the task metric's value, and the fidelity's detail."""

    accuracy: float | None = None
    fidelity: float | None = None
    top1_agreement: float | None = None
    metric_value: float | None = None
    fidelity_detail: dict = field(default_factory=dict)


def judge(outputs: dict, reference: dict | None, labels: np.ndarray | None, metric: Metric | None = None) -> Quality:
    """Accuracy (with labels), fidelity (output cosine vs the baseline's outputs on the same device: per
    output over all samples, the worst output) and the task metric's value, from the device's outputs."""
    first = np.asarray(next(iter(outputs.values())))
    n = len(first)
    acc = None
    if labels is not None:
        preds = first.reshape(n, -1).argmax(1)
        acc = float(np.mean(preds == labels[:n]))
    fid = agree = value = None
    detail = {}
    if reference is not None:
        f = compare_outputs(_per_sample(reference, n), _per_sample(outputs, n))
        fid = f.cosine
        detail = {"sqnr_db": f.sqnr_db, "per_output_cosine": f.per_output_cosine,
                  "sample_cosine_mean": f.sample_cosine_mean, "zero_norm_samples": f.zero_norm_samples}
        ref_first = np.asarray(next(iter(reference.values())))
        agree = float(np.mean(ref_first.reshape(n, -1).argmax(1) == first.reshape(n, -1).argmax(1)))
        if metric is not None:
            try:
                value = metric(reference, outputs, None if labels is None else labels[:n])
            except MetricError as exc:
                raise FarmError(str(exc)) from None
    return Quality(acc, fid, agree, value, detail)
