"""The dashboard's plots, drawn on the server as SVG with matplotlib (no JavaScript library, nothing from a
CDN): a run's latency distribution, its slowest layers, and an optimize run's latency vs quality with the
Pareto front and the choice. Figures are made without pyplot, so request threads never share its state."""

from __future__ import annotations

import io
import threading

import numpy as np
from matplotlib.figure import Figure

from controller.optimization.plot import COLORS, LOG_AXIS_SPREAD, pareto_front

_LOCK = threading.Lock()   # matplotlib's text layout caches are not documented as thread-safe
QUALITY_LABELS = {"accuracy": "accuracy (validation)", "fidelity": "fidelity (output cosine vs baseline)",
                  "metric_value": "task metric"}


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with _LOCK:
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def histogram_end(times_ms: list[float]) -> float:
    """Where the latency histogram's axis ends: rare stalls would hide the shape (a p50 of 0.028 ms once sat
    on an axis to 6.5 ms), so at the 99.5th percentile, and never past 5 interquartile ranges above the third
    quartile (Tukey's far-out fence, widened), nor before the p90."""
    q25, q75, q90, q995 = (float(v) for v in np.percentile(times_ms, [25, 75, 90, 99.5]))
    return min(q995, max(q90, q75 + 5 * (q75 - q25)))


def latency_svg(run: dict, times_ms: list[float] | None = None) -> bytes:
    """The latency chart of a run's page, as SVG (latency_figure)."""
    return _svg(latency_figure(run, times_ms))


def latency_figure(run: dict, times_ms: list[float] | None = None) -> Figure:
    """The latency distribution: a histogram of the per-inference times when the store kept them, else the
    stored percentiles (min, p50, p90, p99, max) on one axis with mean +- std. The axis ends near the bulk of
    the inferences; what lies beyond it is said in the title and the legend."""
    fig = Figure(figsize=(7.5, 2.6), layout="constrained")
    ax = fig.add_subplot()
    if times_ms:
        ordered = sorted(times_ms)
        cut = histogram_end(times_ms)
        shown = [t for t in times_ms if t <= cut]
        ax.hist(shown, bins=min(60, max(10, len(shown) // 20)), color="#4c78a8")
        for name, q in (("p50", 50), ("p99", 99)):
            value = float(np.percentile(times_ms, q))   # as the agent computes the stored percentiles
            if value <= cut:
                ax.axvline(value, color="#e45756" if name == "p50" else "#555", lw=1.2,
                           label=f"{name} {value:.3f} ms")
            else:   # a line there would stretch the axis to the stalls again
                ax.plot([], [], " ", label=f"{name} {value:.3f} ms (beyond the axis)")
        ax.set_xlim(right=cut * 1.02)
        ax.legend(fontsize=8)
        ax.set_ylabel("inferences")
        beyond = len(times_ms) - len(shown)
        ax.set_title(f"{len(times_ms)} per-inference times" + (f" ({beyond} slowest, up to {ordered[-1]:.3f} ms, "
                                                                "beyond the axis)" if beyond else ""), fontsize=9)
    else:
        ax.set_yticks([])
        ax.set_ylim(0, 1)
        mean, std = run.get("mean_ms"), run.get("std_ms")
        if mean is not None and std is not None:
            ax.axvspan(max(mean - std, 0.0), mean + std, ymin=0.3, ymax=0.7, color="#4c78a8", alpha=0.25,
                       label=f"mean +- std ({mean:.3f} +- {std:.3f} ms)")
        p99 = run.get("p99_ms")
        far = run.get("max_ms") is not None and p99 and run["max_ms"] > 3 * p99   # would squash the rest
        marks = [(k, run.get(f"{k}_ms")) for k in ("min", "p50", "p90", "p99", *(() if far else ("max",)))]
        for i, (name, value) in enumerate((k, v) for k, v in marks if v is not None):
            ax.axvline(value, ymin=0.15, ymax=0.85, color="#e45756" if name == "p50" else "#555", lw=1.5)
            ax.annotate(f"{name}\n{value:.3f}", (value, 0.88 - 0.62 * (i % 2)), ha="center", fontsize=8)
        if mean is not None:
            ax.legend(fontsize=8, loc="lower right")
        if far:
            ax.set_xlim(0, 3 * p99)
        ax.set_title(f"percentiles of {run.get('iterations') or '?'} inferences (the store kept no per-inference "
                     "times for this run)" + (f"; max {run['max_ms']:.3f} ms, beyond the axis" if far else ""),
                     fontsize=9)
    ax.set_xlabel("latency (ms)")
    ax.grid(alpha=0.3, axis="x")
    return fig


def layers_svg(layers: list[dict], top: int = 25) -> bytes:
    """Horizontal bars of the slowest layers' time per inference, slowest on top."""
    rows = sorted(layers, key=lambda r: r.get("time_ms") or 0.0, reverse=True)[:top]
    fig = Figure(figsize=(7.5, 0.28 * len(rows) + 1.0), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(rows)), [r.get("time_ms") or 0.0 for r in rows], color="#e45756")
    ax.set_yticks(range(len(rows)), [f"{(r.get('label') or r['name'])[-38:]} ({r.get('op_type') or '?'})" for r in rows],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time per inference (ms)")
    ax.set_title(f"slowest {len(rows)} of {len(layers)} layers", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


def _kind(row: dict, chosen: str | None) -> str:
    if row["name"] == "baseline":
        return "baseline"
    if row["name"] == chosen or row.get("meets"):
        return "meets"
    speedup = row.get("speedup")
    return "slower" if speedup is not None and speedup < 1.0 else "fails"


def tradeoff_svg(device: str, rows: list[dict], quality: str, chosen: str | None) -> bytes:
    """Latency (p50) against quality for one device's measured rows: baseline square, candidates by verdict,
    the Pareto front dashed, the chosen one ringed, each point numbered as in the table."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    pts = [(r["p50_ms"], r[quality]) for r in rows]
    labels = {"baseline": "baseline", "meets": "faster, meets the constraints",
              "fails": "not measurably faster or breaks a limit", "slower": "slower than the baseline"}
    kinds = [_kind(r, chosen) for r in rows]
    for kind in labels:
        sel = [p for p, k in zip(pts, kinds) if k == kind]
        if sel:
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], color=COLORS[kind], s=40, zorder=3,
                       marker="s" if kind == "baseline" else "o", label=labels[kind])
    for r, (x, y) in zip(rows, pts):
        ax.annotate(str(r["number"]), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
    if chosen and any(r["name"] == chosen for r in rows):
        x, y = next(p for p, r in zip(pts, rows) if r["name"] == chosen)
        ax.scatter([x], [y], s=240, facecolors="none", edgecolors="black", linewidths=1.6, zorder=4,
                   label=f"chosen: {chosen}")
    front = pareto_front(pts)
    if pts:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="#888", lw=1, zorder=2,
                label="Pareto front (fastest for its quality)")
    xs = [p[0] for p in pts]
    if xs and min(xs) > 0 and max(xs) / min(xs) > LOG_AXIS_SPREAD:   # as the report's plot: one outlier
        ax.set_xscale("log")
    ys = [p[1] for p in pts]
    if ys:   # a margin around the points (at least 0.002 tall: qualities that close stay readable)
        pad = max((max(ys) - min(ys)) * 0.1, 0.001)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("p50 latency (ms), measured on the device" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(QUALITY_LABELS.get(quality, quality))
    ax.set_title(f"{device}: {len(rows)} measured" + ("" if pts else " (nothing measured yet)"), fontsize=9)
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(fontsize=7.5, loc="best", framealpha=0.9)
    return _svg(fig)
