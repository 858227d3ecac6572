"""The optimize plot: numbered labels that never overlap, a log axis for outliers, limits drawn."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from controller.optimization.constraints import Constraints  # noqa: E402
from controller.optimization.plot import _panel, plot_png, quality_limit  # noqa: E402
from controller.optimization.rows import CandidateRow  # noqa: E402

SUMMARY = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "demo-optimize-summary.json"


def _demo():
    doc = json.loads(SUMMARY.read_text())
    dev = SimpleNamespace(device=doc["device"], baseline=CandidateRow(**doc["baseline"]),
                          candidates=[CandidateRow(**c) for c in doc["candidates"]],
                          chosen=doc["chosen"])
    return SimpleNamespace(model=doc["model"], metric=None, devices=[dev], threads=1, created="2026-11-30",
                           constraints=Constraints(max_accuracy_drop=1.0)), dev


def test_the_demo_run_reads_at_a_glance():
    """17 points of a real `make demo` run, several on top of each other and one 20 ms outlier."""
    result, dev = _demo()
    fig = plt.figure(figsize=(11.5, 5.2))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.55, 1.0])
    ax, table = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    _panel(ax, table, result, dev)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 17 and sorted(t.get_text() for t in ax.texts) == sorted(str(i) for i in range(17))
    assert not [(i, j) for i in range(17) for j in range(i + 1, 17) if boxes[i].overlaps(boxes[j])]
    assert ax.get_xscale() == "log"    # int8-dynamic at 21 ms would squeeze the rest into a sliver
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "baseline" in legend and "chosen: distill" in legend
    assert any(t.startswith("quality limit 0.9647 (--max-accuracy-drop 1)") for t in legend)
    assert ax.get_title() == "digits-mobilenetv2 on local, 1 thread, 2026-11-30"
    assert any("distill" in t.get_text() and "chosen" in t.get_text() for t in table.texts)
    plt.close(fig)
    assert plot_png(result)[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_limits_follow_the_constraints():
    base = CandidateRow("baseline", accuracy=0.97, metric_value=0.8)
    assert quality_limit(Constraints(max_accuracy_drop=2.0), "accuracy", base) == (0.95, "--max-accuracy-drop 2")
    assert quality_limit(Constraints(min_fidelity=0.995), "fidelity", base) == (0.995, "--min-fidelity 0.995")
    low, flag = quality_limit(Constraints(max_metric_drop=0.05), "metric_value", base)
    assert abs(low - 0.75) < 1e-9 and flag == "--max-metric-drop 0.05"
    assert quality_limit(Constraints(), "fidelity", base) is None
