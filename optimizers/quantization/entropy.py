"""KL (entropy) calibration's threshold search, the same arithmetic as ONNX Runtime's
`HistogramCollector.get_entropy_threshold`, with its per-bin Python loops done by numpy.

ONNX Runtime (1.2x) sums histogram slices with Python's `sum()` over numpy scalars, three times per
candidate threshold: with the 2048 bins KL needs to search anything (static.ENTROPY_BINS), that is about
a million Python additions per tensor, and KL calibration of YOLOv8n took five minutes on a 2-core
machine, almost all of it there. Here the integer sums are numpy sums (exact, so the same numbers), the
smoothing and the divergence are ONNX Runtime's own functions, and the chosen threshold is the same
(tests/optimizers/quantization/test_entropy.py compares the two on many histograms)."""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization.calibrate import entropy
from onnxruntime.quantization.quant_utils import smooth_distribution


def entropy_threshold(histogram: tuple, num_quantized_bins: int) -> tuple:
    """(low, high) of the slice of the histogram whose quantized copy diverges least from it (KL), clipped
    to the observed min and max; `histogram` is ORT's (hist, edges, min, max)."""
    hist, edges = histogram[0], histogram[1]
    num_bins = hist.size
    zero = num_bins // 2
    half = num_quantized_bins // 2
    dtype = edges.dtype
    cumulative = np.concatenate([[0], np.cumsum(hist)])   # exact for integer counts
    total = cumulative[-1]
    divergences = np.zeros(zero - half + 1)
    thresholds = []
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        thresholds.append((edges[start], edges[end]))
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += cumulative[start]          # left outliers
        p[-1] += total - cumulative[end]   # right outliers
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1).astype(np.int64)
        quantized[-1] += sliced[body:].sum()
        norm = nonzeros[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, dtype=np.int64)
        # ORT writes quantized/norm into an int64 array: truncated; bins with norm 0 stay 0
        spread = np.zeros(num_quantized_bins, dtype=np.int64)
        has = norm != 0
        spread[has] = (quantized[has] / norm[has]).astype(np.int64)
        q[:body] = np.repeat(spread, merged)
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        divergences[i - half] = np.inf if ps is None or qs is None else np.array(entropy(ps, qs), dtype=dtype)
    low, high = thresholds[int(np.argmin(divergences))]
    low, high = np.asarray(low, dtype=dtype), np.asarray(high, dtype=dtype)
    return max(low, histogram[2]), min(high, histogram[3])   # (within what was observed)
