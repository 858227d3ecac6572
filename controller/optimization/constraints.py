"""How a candidate's quality is judged in `farmctl optimize`: accuracy with labels, fidelity against the
baseline's outputs on the same device (cosine per output over the whole set, so an output-identical model
scores exactly 1.0 even where reference outputs are all zeros), an optional task metric (`--metric`), and
the constraints every choice must meet."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from controller.errors import FarmError
from optimizers.evaluation import compare_outputs
from optimizers.metrics import Metric, MetricError, resolve_metric

DEFAULT_ACCURACY_DROP = 1.0   # points, when the data carry labels and no constraint is given
DEFAULT_FIDELITY = 0.99       # output cosine, when they do not
DEFAULT_METRIC_DROP = 0.01    # in the metric's own units, when --metric is given without a limit
MAX_EVAL_ROWS = 1000


@dataclass
class Constraints:
    """What the chosen candidate must meet (None = no limit)."""

    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None   # percentage points of accuracy, with labelled data
    min_fidelity: float | None = None        # output cosine vs the original model (worst output)
    min_metric: float | None = None          # the --metric's value a candidate must reach
    max_metric_drop: float | None = None     # how far below the baseline's --metric value it may fall

    def resolved(self, labelled: bool, metric: Metric | None = None) -> Constraints:
        """Fill the default quality guard: with a --metric, a drop of 0.01 of it; else 1 point of accuracy
        with labels, fidelity 0.99 without."""
        if metric is None and (self.min_metric is not None or self.max_metric_drop is not None):
            raise FarmError("--min-metric and --max-metric-drop limit a task metric: name it with --metric "
                            "(top1, mask-iou@0.5 or module:function)")
        if self.max_accuracy_drop is not None and not labelled:
            raise FarmError("--max-accuracy-drop needs labelled evaluation data (an .npz with 'labels', or the "
                            "built-in example); without labels use --min-fidelity")
        quality = (self.max_accuracy_drop, self.min_fidelity, self.min_metric, self.max_metric_drop)
        if all(q is None for q in quality):
            if metric is not None:
                return replace(self, max_metric_drop=DEFAULT_METRIC_DROP)
            return replace(self, **({"max_accuracy_drop": DEFAULT_ACCURACY_DROP} if labelled
                                    else {"min_fidelity": DEFAULT_FIDELITY}))
        return self

    def failures(self, row: dict, baseline: dict) -> list[str]:
        """Each constraint the candidate breaks, with by how much."""
        out = []
        p50 = (row.get("latency_ms") or {}).get("p50")
        if self.max_latency_ms is not None and p50 is not None and p50 > self.max_latency_ms:
            out.append(f"p50 {p50:.3f} ms > --max-latency-ms {self.max_latency_ms:g} "
                       f"(by {p50 - self.max_latency_ms:.3f} ms)")
        size = row.get("size_bytes")
        if self.max_size_mb is not None and size is not None and size / 1e6 > self.max_size_mb:
            out.append(f"size {size / 1e6:.3f} MB > --max-size-mb {self.max_size_mb:g} "
                       f"(by {size / 1e6 - self.max_size_mb:.3f} MB)")
        acc, base_acc = row.get("accuracy"), baseline.get("accuracy")
        if self.max_accuracy_drop is not None and acc is not None and base_acc is not None:
            drop = (base_acc - acc) * 100
            if drop > self.max_accuracy_drop:
                out.append(f"accuracy drop {drop:.2f} points > --max-accuracy-drop {self.max_accuracy_drop:g} "
                           f"(by {drop - self.max_accuracy_drop:.2f})")
        fid = row.get("fidelity")
        if self.min_fidelity is not None and fid is not None and fid < self.min_fidelity:
            out.append(f"fidelity {fid:.4f} < --min-fidelity {self.min_fidelity:g} "
                       f"(by {self.min_fidelity - fid:.4f})")
        value, base_value = row.get("metric_value"), baseline.get("metric_value")
        if self.min_metric is not None and value is not None and value < self.min_metric:
            out.append(f"metric {value:.4f} < --min-metric {self.min_metric:g} (by {self.min_metric - value:.4f})")
        if self.max_metric_drop is not None and value is not None and base_value is not None:
            drop = base_value - value
            if drop > self.max_metric_drop:
                out.append(f"metric drop {drop:.4f} > --max-metric-drop {self.max_metric_drop:g} "
                           f"(by {drop - self.max_metric_drop:.4f})")
        return out

    def relaxations(self, row: dict, baseline: dict) -> list[Relaxation]:
        """For each constraint the candidate breaks: the flag value that lets it pass (checked with
        failures(): rounded to what the flag is printed with, then stepped until it passes), and how far it
        is from passing, normalised by the limit (latency, size: excess / limit; accuracy or metric drop:
        excess / max(limit, 1 point or 0.01); fidelity: shortfall / the loss the limit allows)."""
        p50 = (row.get("latency_ms") or {}).get("p50")
        size = row.get("size_bytes")
        acc, base_acc = row.get("accuracy"), baseline.get("accuracy")
        value, base_value = row.get("metric_value"), baseline.get("metric_value")
        fid = row.get("fidelity")
        # field, flag, the row's value in the flag's units, digits printed, +1: a maximum / -1: a minimum,
        # what one unit of distance is
        checks = [("max_latency_ms", "--max-latency-ms", p50, 3, 1, self.max_latency_ms),
                  ("max_size_mb", "--max-size-mb", None if size is None else size / 1e6, 3, 1, self.max_size_mb),
                  ("max_accuracy_drop", "--max-accuracy-drop",
                   None if acc is None or base_acc is None else (base_acc - acc) * 100, 2, 1,
                   max(self.max_accuracy_drop or 0, 1.0)),
                  ("min_fidelity", "--min-fidelity", fid, 4, -1, 1.0 - (self.min_fidelity or 0)),
                  ("min_metric", "--min-metric", value, 4, -1, self.min_metric),
                  ("max_metric_drop", "--max-metric-drop",
                   None if value is None or base_value is None else base_value - value, 4, 1,
                   max(self.max_metric_drop or 0, 0.01))]
        out = []
        for name, flag, have, digits, sign, unit in checks:
            limit = getattr(self, name)
            if limit is None or have is None or sign * (have - limit) <= 0:
                continue
            step = 10.0 ** -digits
            allow = round((math.ceil if sign > 0 else math.floor)(round(have / step, 6)) * step, digits)
            for _ in range(5):   # the printed value must really admit the row (2.2700000000000053 > 2.27)
                if not any(f"{flag} " in f for f in replace(self, **{name: allow}).failures(row, baseline)):
                    break
                allow = round(allow + sign * step, digits)
            out.append(Relaxation(flag, allow, abs(have - limit) / max(abs(unit or 0), 1e-4), digits))
        return out

    def quality_failed(self, row: dict, baseline: dict) -> bool:
        """Whether the accuracy/fidelity/metric part fails (what mixed precision can repair)."""
        return any(f.startswith(("accuracy", "fidelity", "metric")) for f in self.failures(row, baseline))


@dataclass(frozen=True)
class Relaxation:
    """A constraint a candidate breaks: the flag, the value that lets it pass, how far it is (normalised)."""

    flag: str
    value: float
    distance: float
    digits: int = 4

    def text(self) -> str:
        return f"{self.flag} " + f"{self.value:.{self.digits}f}".rstrip("0").rstrip(".")


def closest(rows: list[dict], constraints: Constraints, baseline: dict, n: int = 3) -> list[str]:
    """The candidates nearest to being chosen, nearest first, each with what would let it be chosen:
    those measurably faster than the baseline by the summed normalised distance of the constraints they
    break (with the flag values that would admit them), then the others with why they cannot be."""
    measured = [r for r in rows if r.get("latency_ms")]
    relaxed = {id(r): constraints.relaxations(r, baseline) for r in measured}

    def key(row: dict) -> tuple:
        fast = not row.get("speed_failure")
        return (not fast, sum(r.distance for r in relaxed[id(row)]) if fast else -(row.get("speedup") or 0))

    out = []
    for row in sorted(measured, key=key)[:n]:
        relax = relaxed[id(row)]
        if row.get("speed_failure") or not relax:
            out.append(f"{row['name']} ({row.get('reason', '')})")
            continue
        out.append(f"{row['name']}: {row['speedup']:.2f}x faster; allow " + " and ".join(r.text() for r in relax)
                   + " to choose it (" + "; ".join(constraints.failures(row, baseline)) + ")")
    return out


def metric_or_error(spec) -> Metric | None:
    """The task metric of `--metric` / `metric=` (None: none), or a FarmError saying what is wrong."""
    if spec is None:
        return None
    try:
        return resolve_metric(spec)
    except MetricError as exc:
        raise FarmError(str(exc)) from None


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


def judge(outputs: dict, reference: dict | None, labels: np.ndarray | None, metric: Metric | None = None) -> dict:
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
    return {"accuracy": acc, "fidelity": fid, "top1_agreement": agree, "metric_value": value, "fidelity_detail": detail}
