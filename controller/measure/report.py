"""Tables from the results store as Markdown, CSV and HTML (the HTML with a latency plot)."""

from __future__ import annotations

import base64
import csv
import html
import io

from optimizers.layer_names import layer_label

COLUMNS = [("id", "run"), ("created_at", "when"), ("kind", "kind"), ("status", "status"),
           ("model_name", "model"), ("device_name", "device"), ("device_class", "class"),
           ("backend", "backend"), ("backend_version", "version"), ("threads", "threads"),
           ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("cv", "cv"),
           ("iterations", "n"), ("peak_memory_bytes", "peak MiB"), ("flags", "flags"),
           ("error_code", "error")]


def _cell(key: str, value) -> str:
    if value is None:
        return ""
    if key == "peak_memory_bytes":
        return f"{value / 2**20:.0f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table_rows(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells for a list of runs."""
    return [h for _, h in COLUMNS], [[_cell(k, r.get(k)) for k, _ in COLUMNS] for r in runs]


def to_markdown(runs: list[dict]) -> str:
    """A GitHub-flavoured Markdown table."""
    header, rows = table_rows(runs)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(runs: list[dict]) -> str:
    """CSV with raw (unformatted) values and the store's column names."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(runs)
    return buf.getvalue()


def latency_plot_png(runs: list[dict]) -> bytes | None:
    """Horizontal bars of p50 with p90 whiskers per successful benchmark run, one panel (and latency axis)
    per model: latencies of different models never share an axis (None without matplotlib)."""
    ok = [r for r in runs if r.get("status") == "ok" and r.get("p50_ms") is not None][:40]
    if not ok:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = latency_figure(ok, plt)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def latency_figure(ok: list[dict], plt):
    """The figure of latency_plot_png: one panel per model."""
    models = list(dict.fromkeys(r["model_name"] for r in ok))
    groups = [[r for r in ok if r["model_name"] == m] for m in models]
    fig, axes = plt.subplots(len(models), 1, squeeze=False, figsize=(9, 0.4 * len(ok) + 1.1 * len(models) + 0.4),
                             gridspec_kw={"height_ratios": [len(g) + 1 for g in groups]})
    for ax, model, group in zip(axes[:, 0], models, groups):
        labels = [f"#{r['id']} @ {r['device_name']} ({r['kind']}, {r['threads']}t)" for r in group]
        p50 = [r["p50_ms"] for r in group]
        err = [max(0.0, (r["p90_ms"] or r["p50_ms"]) - r["p50_ms"]) for r in group]
        ax.barh(range(len(group)), p50, xerr=[[0] * len(group), err], color="#4c78a8", capsize=3)
        ax.set_yticks(range(len(group)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{model}: latency p50 (ms), whisker to p90", fontsize=9)
    fig.suptitle("edgefarm measured latency, one axis per model", fontsize=10)
    fig.tight_layout()
    return fig


def to_html(runs: list[dict]) -> str:
    """A standalone HTML page: the plot (when matplotlib is present) and the table."""
    header, rows = table_rows(runs)
    png = latency_plot_png(runs)
    img = (f'<img alt="latency plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
           if png else "")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>edgefarm report</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px;font-size:13px}</style></head><body><h1>edgefarm report</h1>"
            f"{img}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n")


def render(runs: list[dict], fmt: str) -> str:
    """Render runs as md, csv or html."""
    return {"md": to_markdown, "markdown": to_markdown, "csv": to_csv, "html": to_html}[fmt](runs)


def layer_plot_png(layers: list[dict], top: int = 20) -> bytes:
    """Bar chart of the slowest layers' time per inference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = layers[:top]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["time_ms"] for r in rows], color="#e45756")
    ax.set_yticks(range(len(rows)), [f"{r.get('label') or layer_label(r['name'], r.get('source_nodes'))} ({r['op_type']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time per inference (ms)")
    ax.set_title(f"slowest {len(rows)} layers")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
