"""The dashboard's latency chart shows where the inferences are: its axis ends near the p99, not at the
slowest outlier."""

from __future__ import annotations

import numpy as np

from controller.dashboard.charts import histogram_end, latency_figure, latency_svg


def test_a_fast_model_with_rare_stalls_keeps_an_axis_near_its_p99():
    rng = np.random.default_rng(0)
    times = list(0.028 + rng.random(1000) * 0.004)
    times[::80] = [6.5] * len(times[::80])   # 13 stalls (1.3 %) of 6.5 ms
    end = histogram_end(times)
    assert float(np.percentile(times, 90)) <= end < 0.1
    assert b"beyond the axis" in latency_svg({"iterations": 1000}, times)
    assert latency_figure({"iterations": 1000}, times).axes[0].get_xlim()[1] < 0.1   # the axis itself, not 6.5


def test_percentiles_only_put_a_far_max_beyond_the_axis():
    run = {"min_ms": 0.027, "p50_ms": 0.028, "p90_ms": 0.03, "p99_ms": 0.04, "max_ms": 6.5, "mean_ms": 0.03,
           "std_ms": 0.2, "iterations": 500}
    assert b"max 6.500 ms, beyond the axis" in latency_svg(run)
    assert latency_figure(run).axes[0].get_xlim()[1] <= 3 * 0.04
