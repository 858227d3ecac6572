"""Latency statistics over a list of per-iteration timings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_stats(times_ns: Sequence[int]) -> dict[str, float]:
    """min/p50/p90/p99/mean/std/max in milliseconds, the coefficient of variation and the count."""
    if not times_ns:
        raise ValueError("no timings to summarise")
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return {
        "min_ms": float(ms.min()), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "mean_ms": mean, "std_ms": std, "max_ms": float(ms.max()),
        "cv": std / mean if mean > 0 else 0.0, "count": int(ms.size),
    }
