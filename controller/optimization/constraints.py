"""The constraints every choice of `farmctl optimize` must meet (latency, size, and a quality guard:
accuracy drop, fidelity or the task metric), each failure with by how much, and the advice for the
candidates closest to being chosen."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from controller.errors import UsageError
from controller.optimization.rows import CandidateRow
from optimizers.evaluation.metrics import Metric

DEFAULT_ACCURACY_DROP = 1.0   # points, when the data carry labels and no constraint is given
DEFAULT_FIDELITY = 0.99       # output cosine, when they do not
DEFAULT_METRIC_DROP = 0.01    # in the metric's own units, when --metric is given without a limit


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
            raise UsageError("--min-metric and --max-metric-drop limit a task metric: name it with --metric "
                            "(top1, mask-iou@0.5, det-agreement or module:function)")
        if self.max_accuracy_drop is not None and not labelled:
            raise UsageError("--max-accuracy-drop needs labelled evaluation data (an .npz with 'labels', or the "
                            "built-in example); without labels use --min-fidelity")
        quality = (self.max_accuracy_drop, self.min_fidelity, self.min_metric, self.max_metric_drop)
        if all(q is None for q in quality):
            if metric is not None:   # a metric may say what drop is usual for it (det-agreement: 0.1)
                return replace(self, max_metric_drop=getattr(metric, "default_drop", DEFAULT_METRIC_DROP))
            return replace(self, **({"max_accuracy_drop": DEFAULT_ACCURACY_DROP} if labelled
                                    else {"min_fidelity": DEFAULT_FIDELITY}))
        return self

    def failures(self, row: CandidateRow, baseline: CandidateRow) -> list[str]:
        """Each constraint the candidate breaks, with by how much."""
        out = []
        p50 = row.p50
        if self.max_latency_ms is not None and p50 is not None and p50 > self.max_latency_ms:
            out.append(f"p50 {p50:.3f} ms > --max-latency-ms {self.max_latency_ms:g} "
                       f"(by {p50 - self.max_latency_ms:.3f} ms)")
        size = row.size_bytes
        if self.max_size_mb is not None and size is not None and size / 1e6 > self.max_size_mb:
            out.append(f"size {size / 1e6:.3f} MB > --max-size-mb {self.max_size_mb:g} "
                       f"(by {size / 1e6 - self.max_size_mb:.3f} MB)")
        acc, base_acc = row.accuracy, baseline.accuracy
        if self.max_accuracy_drop is not None and acc is not None and base_acc is not None:
            drop = (base_acc - acc) * 100
            if drop > self.max_accuracy_drop:
                out.append(f"accuracy drop {drop:.2f} points > --max-accuracy-drop {self.max_accuracy_drop:g} "
                           f"(by {drop - self.max_accuracy_drop:.2f})")
        fid = row.fidelity
        if self.min_fidelity is not None and fid is not None and fid < self.min_fidelity:
            out.append(f"fidelity {fid:.4f} < --min-fidelity {self.min_fidelity:g} "
                       f"(by {self.min_fidelity - fid:.4f})")
        value, base_value = row.metric_value, baseline.metric_value
        if self.min_metric is not None and value is not None and value < self.min_metric:
            out.append(f"metric {value:.4f} < --min-metric {self.min_metric:g} (by {self.min_metric - value:.4f})")
        if self.max_metric_drop is not None and value is not None and base_value is not None:
            drop = base_value - value
            if drop > self.max_metric_drop:
                out.append(f"metric drop {drop:.4f} > --max-metric-drop {self.max_metric_drop:g} "
                           f"(by {drop - self.max_metric_drop:.4f})")
        return out

    def relaxations(self, row: CandidateRow, baseline: CandidateRow) -> list[Relaxation]:
        """For each constraint the candidate breaks: the flag value that lets it pass (checked with
        failures(): rounded to what the flag is printed with, then stepped until it passes), and how far it
        is from passing, normalised by the limit (latency, size: excess / limit; accuracy or metric drop:
        excess / max(limit, 1 point or 0.01); fidelity: shortfall / the loss the limit allows)."""
        p50, size, fid = row.p50, row.size_bytes, row.fidelity
        acc, base_acc = row.accuracy, baseline.accuracy
        value, base_value = row.metric_value, baseline.metric_value
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

    def quality_failed(self, row: CandidateRow, baseline: CandidateRow) -> bool:
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


def closest(rows: list[CandidateRow], constraints: Constraints, baseline: CandidateRow, n: int = 3) -> list[str]:
    """The candidates nearest to being chosen, nearest first, each with what would let it be chosen:
    those measurably faster than the baseline by the summed normalised distance of the constraints they
    break (with the flag values that would admit them), then the others with why they cannot be."""
    measured = [r for r in rows if r.latency_ms]
    relaxed = {id(r): constraints.relaxations(r, baseline) for r in measured}

    def key(row: CandidateRow) -> tuple:
        fast = not row.speed_failure
        return (not fast, sum(r.distance for r in relaxed[id(row)]) if fast else -(row.speedup or 0))

    out = []
    for row in sorted(measured, key=key)[:n]:
        relax = relaxed[id(row)]
        if row.speed_failure or not relax:
            out.append(f"{row.name} ({row.reason})")
            continue
        out.append(f"{row.name}: {row.speedup:.2f}x faster; allow " + " and ".join(r.text() for r in relax)
                   + " to choose it (" + "; ".join(constraints.failures(row, baseline)) + ")")
    return out
