"""Latency statistics over a list of per-iteration timings, and the paired speedup of two models timed
in the same loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def latency_stats(times_ns: Sequence[int]) -> dict[str, float]:
    """min/p50/p90/p95/p99/mean/std/max in milliseconds, the coefficient of variation and the count."""
    if not times_ns:
        raise ValueError("no timings to summarise")
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, [50, 90, 95, 99]))
    return {
        "min_ms": float(ms.min()), "p50_ms": p50, "p90_ms": p90, "p95_ms": p95, "p99_ms": p99,
        "mean_ms": mean, "std_ms": std, "max_ms": float(ms.max()),
        "cv": std / mean if mean > 0 else 0.0, "count": int(ms.size),
    }


@dataclass(frozen=True)
class PairedRatio:
    """The median over iteration pairs of reference time / model time (> 1: the model is faster), with a
    confidence interval: how a contender compares with its reference timed in the same loop."""

    median: float
    low: float
    high: float
    pairs: int
    rounds: int
    confidence: float = 0.95

    @property
    def interval(self) -> list[float]:
        """[low, high], as `speedup_ci` in the JSON and the reports."""
        return [round(self.low, 4), round(self.high, 4)]

    def verdict(self, margin: float) -> str:
        """'faster' when the interval's lower end clears the noise margin, 'slower' when its upper end is
        below 1/margin, else 'equal'."""
        if self.low >= margin:
            return "faster"
        if self.high <= 1.0 / margin:
            return "slower"
        return "equal"

    def text(self) -> str:
        """'1.23x (95 % CI 1.20-1.26)'; more digits where two would round away what the verdict rests on
        ('0.9980x (95 % CI 0.9977-0.9983)', never a '1.00x' called slower)."""
        median, low, high = ratio_texts(self.median, self.low, self.high)
        return f"{median}x (95 % CI {low}-{high})"


def ratio_texts(*values: float) -> list[str]:
    """Speed ratios with 2 decimals, or as many more (up to 4) as it takes for no value other than 1 to
    print as 1 and no two different values to print alike."""
    for digits in (2, 3, 4):
        texts = [f"{v:.{digits}f}" for v in values]
        one = f"{1:.{digits}f}"
        if all(t != one or v == 1.0 for t, v in zip(texts, values)) and \
                len(set(texts)) == len(set(values)):
            return texts
    return texts


def paired_ratio(rounds: Sequence[tuple[Sequence[float], Sequence[float]]], confidence: float = 0.95,
                 resamples: int = 1000, seed: int = 0) -> PairedRatio:
    """Paired speedup over one or more measured loops. Each round is (reference_times, model_times) of one
    loop, where reference_times[i] and model_times[i] ran back to back; the speedup is the median of
    reference_times[i] / model_times[i] over every pair of every round. The interval is a block bootstrap:
    pairs close in time share the machine's state (a slow spell), so each round is cut into blocks of
    about sqrt(n) consecutive pairs and whole blocks are resampled."""
    ratios = []
    for ref, model in rounds:
        ref_a, model_a = np.asarray(ref, np.float64), np.asarray(model, np.float64)
        n = min(ref_a.size, model_a.size)
        keep = (model_a[:n] > 0) & (ref_a[:n] > 0)
        if keep.any():
            ratios.append(ref_a[:n][keep] / model_a[:n][keep])
    if not ratios:
        raise ValueError("no paired timings to compare")
    everything = np.concatenate(ratios)
    shortest = min(r.size for r in ratios)
    block = max(1, round(float(np.sqrt(shortest))))
    blocks = np.concatenate([r[: r.size // block * block].reshape(-1, block) for r in ratios if r.size >= block])
    rng = np.random.default_rng(seed)
    medians = []
    per_batch = max(1, 2_000_000 // max(blocks.size, 1))
    for start in range(0, resamples, per_batch):
        count = min(per_batch, resamples - start)
        picks = rng.integers(0, len(blocks), size=(count, len(blocks)))
        medians.append(np.median(blocks[picks].reshape(count, -1), axis=1))
    boot = np.concatenate(medians)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    median = float(np.median(everything))
    return PairedRatio(median=median, low=float(min(low, median)), high=float(max(high, median)),
                       pairs=int(everything.size), rounds=len(ratios), confidence=confidence)
