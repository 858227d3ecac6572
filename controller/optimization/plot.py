"""The latency vs quality plot of `farmctl optimize`, for people: numbered points with a legend table
(each number placed where it overlaps no other; past ten tries, beside the point on a leader line), the
Pareto front dashed, a log latency axis when one outlier would squeeze the rest, the quality and
latency limits drawn and named, the baseline and the choice in the legend, and a title naming model,
device, threads and date."""

from __future__ import annotations

import io
from datetime import date

from controller.optimization.rows import CandidateRow

LOG_AXIS_SPREAD = 8.0       # max/min latency above this: log x axis
COLORS = {"baseline": "#4c78a8", "meets": "#54a24b", "fails": "#e45756", "slower": "#9d9d9d"}
LABEL_OFFSETS = [(5, 4), (5, -10), (-12, 4), (-12, -10), (5, 12), (-12, 12), (5, -18), (-12, -18), (14, -3),
                 (-20, -3)]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower latency (x) and higher quality (y)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def quality_key(result, device) -> str:
    """The y axis: the task metric, accuracy with labels, else fidelity."""
    if getattr(result, "metric", None):
        return "metric_value"
    return "accuracy" if device.baseline.accuracy is not None else "fidelity"


def quality_limit(constraints, key: str, baseline: CandidateRow) -> tuple[float, str] | None:
    """(the lowest quality a candidate may have, how the limit was given), or None without one."""
    if constraints is None:
        return None
    if key == "accuracy" and constraints.max_accuracy_drop is not None and baseline.accuracy is not None:
        return (baseline.accuracy - constraints.max_accuracy_drop / 100,
                f"--max-accuracy-drop {constraints.max_accuracy_drop:g}")
    if key == "fidelity" and constraints.min_fidelity is not None:
        return constraints.min_fidelity, f"--min-fidelity {constraints.min_fidelity:g}"
    if key == "metric_value":
        if constraints.min_metric is not None:
            return constraints.min_metric, f"--min-metric {constraints.min_metric:g}"
        if constraints.max_metric_drop is not None and baseline.metric_value is not None:
            return (baseline.metric_value - constraints.max_metric_drop,
                    f"--max-metric-drop {constraints.max_metric_drop:g}")
    return None


def _kind(row: CandidateRow) -> str:
    """baseline, meets (every constraint), slower (than the baseline: its whole interval below 1), or
    fails (a limit, or not measurably faster)."""
    if row.name == "baseline":
        return "baseline"
    if row.meets_constraints:
        return "meets"
    ci = row.speedup_ci
    return "slower" if ci and ci[1] < 1.0 else "fails"


def _place_labels(ax, points: list[tuple[float, float]], texts: list[str], fontsize: float) -> list:
    """Put each number beside its point at the first offset whose box overlaps no label placed so far."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for (x, y), text in zip(points, texts):
        for dx, dy in LABEL_OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                              fontweight="bold", zorder=5)
            box = ann.get_window_extent(renderer).expanded(1.1, 1.15)
            if not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            ann.remove()
        else:   # every offset taken: the last one, with a leader line
            ann = ax.annotate(text, (x, y), xytext=(24, 18 + 10 * len(placed) % 40), textcoords="offset points",
                              fontsize=fontsize, fontweight="bold", zorder=5,
                              arrowprops={"arrowstyle": "-", "color": "#666", "lw": 0.6})
            placed.append(ann.get_window_extent(renderer))
    return placed


def plot_png(result) -> bytes | None:
    """One panel per device, each with its legend table; PNG bytes (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    devices = result.devices
    fig = plt.figure(figsize=(11.5, 5.2 * len(devices)))
    grid = fig.add_gridspec(len(devices), 2, width_ratios=[1.55, 1.0], wspace=0.02, left=0.07, right=0.99,
                            top=1 - 0.07 / len(devices), bottom=0.1 / len(devices), hspace=0.3)
    for i, d in enumerate(devices):   # the layout is final before the labels are placed
        ax, table = fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1])
        _panel(ax, table, result, d)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _panel(ax, table, result, d) -> None:
    key = quality_key(result, d)
    rows = [r for r in [d.baseline, *d.candidates] if r.latency_ms and r.status != "failed"
            and getattr(r, key) is not None]   # a row without the quality value is in the report's table only
    pts = [(r.p50, getattr(r, key)) for r in rows]
    xs = [p[0] for p in pts]
    if xs and min(xs) > 0 and max(xs) / min(xs) > LOG_AXIS_SPREAD:
        ax.set_xscale("log")
    kinds = [_kind(r) for r in rows]
    labels = {"baseline": "baseline", "meets": "meets every constraint",
              "fails": "breaks a limit or not measurably faster", "slower": "slower than the baseline"}
    for kind in ("baseline", "meets", "fails", "slower"):
        sel = [p for p, k in zip(pts, kinds) if k == kind]
        if sel:
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], color=COLORS[kind], s=42, zorder=3,
                       marker="s" if kind == "baseline" else "o", label=labels[kind])
    if d.chosen:
        x, y = next(p for p, r in zip(pts, rows) if r.name == d.chosen)
        ax.scatter([x], [y], s=260, facecolors="none", edgecolors="black", linewidths=1.6, zorder=4,
                   label=f"chosen: {d.chosen}")
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="#888", lw=1, zorder=2,
            label="Pareto front (fastest for its quality)")
    base_p50 = d.baseline.p50
    ax.axvline(base_p50, color=COLORS["baseline"], ls=":", lw=1, zorder=1)
    limit = quality_limit(getattr(result, "constraints", None), key, d.baseline)
    if limit is not None:
        ax.axhline(limit[0], color="#b279a2", ls="--", lw=1.2, zorder=1,
                   label=f"quality limit {limit[0]:.4g} ({limit[1]})")
    max_latency = getattr(getattr(result, "constraints", None), "max_latency_ms", None)
    if max_latency is not None:
        ax.axvline(max_latency, color="#f58518", ls="--", lw=1.2, zorder=1,
                   label=f"latency limit {max_latency:g} ms (--max-latency-ms)")
    ys = [p[1] for p in pts] + ([limit[0]] if limit else [])
    if ys:
        low, high = min(ys), max(ys)
        pad = (high - low) * 0.08 or 0.005
        ax.set_ylim(low - pad, high + pad)
    numbers = [str(n) for n in range(len(rows))]
    _place_labels(ax, pts, numbers, 8)
    ax.set_xlabel("p50 latency (ms), measured on the device" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel({"metric_value": f"{getattr(result, 'metric', '')} (task metric)",
                   "accuracy": "accuracy (validation)"}.get(key, "fidelity (output cosine vs baseline)"))
    threads = getattr(result, "threads", None)
    when = getattr(result, "created", None) or date.today().isoformat()
    shown = "" if threads is None else ", all cores" if threads == 0 else f", {threads} thread{'s' * (threads != 1)}"
    ax.set_title(f"{result.model} on {d.device}{shown}, {when}", fontsize=10)
    ax.legend(fontsize=7.5, loc="best", framealpha=0.9)
    ax.grid(alpha=0.3, which="both")
    _legend_table(table, rows, kinds, key, d.chosen)


def _legend_table(ax, rows: list[CandidateRow], kinds: list[str], key: str, chosen: str | None) -> None:
    """The numbered names, with speedup and quality, in the plot's colours."""
    ax.axis("off")
    short = {"accuracy": "acc", "fidelity": "fid", "metric_value": "metric"}[key]
    lines = len(rows) + 1
    step = min(0.055, 0.96 / max(lines, 1))
    ax.text(0.0, 0.99, f"#   candidate{'':22s}speedup  {short}", family="monospace", fontsize=8,
            fontweight="bold", va="top", transform=ax.transAxes)
    for n, (r, kind) in enumerate(zip(rows, kinds)):
        speed = "1.00x" if r.name == "baseline" else (f"{r.speedup:.2f}x" if r.speedup else "  -  ")
        q = getattr(r, key)
        mark = " <- chosen" if r.name == chosen else ""
        text = f"{n:<3d} {r.name[:30]:31s} {speed:>6s}  {q:.4f}" if q is not None else \
            f"{n:<3d} {r.name[:30]:31s} {speed:>6s}  -"
        ax.text(0.0, 0.99 - step * (n + 1), text + mark, family="monospace", fontsize=8, va="top",
                color=COLORS[kind] if kind != "meets" else "#2f6f2a", transform=ax.transAxes,
                fontweight="bold" if mark else "normal")

