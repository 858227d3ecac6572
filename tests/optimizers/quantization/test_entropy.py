"""KL calibration's threshold search (optimizers/quantization/entropy.py) picks exactly what ONNX Runtime's
own HistogramCollector.get_entropy_threshold picks, on the histograms activations give: skewed, two-sided,
sparse, with outliers."""

from __future__ import annotations

import numpy as np
import pytest
from onnxruntime.quantization.calibrate import HistogramCollector

from optimizers.quantization.entropy import entropy_threshold


def _histogram(values: np.ndarray, bins: int) -> tuple:
    """ORT's form: (counts, edges, min, max), symmetric edges around zero as its collector makes them."""
    bound = float(np.abs(values).max())
    hist, edges = np.histogram(values, bins, range=(-bound, bound))
    return hist, edges.astype(np.float32), np.float32(values.min()), np.float32(values.max())


def _samples(kind: str, rng: np.random.Generator) -> np.ndarray:
    n = 20_000
    if kind == "relu":
        return np.maximum(rng.standard_normal(n), 0).astype(np.float32)
    if kind == "gauss":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "outliers":
        return np.concatenate([rng.standard_normal(n), [40.0, -25.0]]).astype(np.float32)
    if kind == "sparse":
        return np.concatenate([np.zeros(n), rng.laplace(size=50)]).astype(np.float32)
    return (rng.exponential(size=n) - 0.2).astype(np.float32)   # skewed


@pytest.mark.parametrize("kind", ["relu", "gauss", "outliers", "sparse", "skewed"])
@pytest.mark.parametrize("bins,quantized", [(512, 128), (300, 64)])
def test_same_threshold_as_onnxruntime(kind, bins, quantized):
    hist = _histogram(_samples(kind, np.random.default_rng(bins + len(kind))), bins)
    theirs = HistogramCollector.get_entropy_threshold(None, hist, quantized)  # (self unused)
    ours = entropy_threshold(hist, quantized)
    assert [float(v) for v in ours] == [float(v) for v in theirs]
    assert all(hasattr(v, "dtype") for v in ours)


def test_2048_bins_as_static_int8_calibrates_them():
    """static.ENTROPY_BINS: the size KL runs at (ORT's own search is the slow part there; the speed is in
    docs/techniques.md, not asserted here)."""
    hist = _histogram(_samples("outliers", np.random.default_rng(7)), 2048)
    theirs = HistogramCollector.get_entropy_threshold(None, hist, 128)
    assert [float(v) for v in entropy_threshold(hist, 128)] == [float(v) for v in theirs]
