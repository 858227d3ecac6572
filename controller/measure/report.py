"""Reports of the results store: the runs table and a model x device pivot as Markdown, CSV (every stored
column), JSON and HTML (with a latency plot)."""

from __future__ import annotations

import base64
import html
import io
import json

from controller.measure import frames
from optimizers.graph.layer_names import layer_label

COLUMNS = [("id", "run"), ("created_at", "when"), ("kind", "kind"), ("status", "status"),
           ("model_name", "model"), ("device_name", "device"), ("device_class", "class"),
           ("backend", "backend"), ("backend_version", "version"), ("threads", "threads"),
           ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("cv", "cv"),
           ("iterations", "n"), ("peak_memory_bytes", "peak MiB"), ("flags", "flags"),
           ("error_code", "error")]
# the CSV and JSON keep every column but the agent's raw JSON documents (`farmctl show RUN --json` has them)
RAW_JSON = ("result_json", "device_json")
PIVOT_OF = "the newest successful benchmark of each model on each device"


def _cell(key: str, value) -> str:
    if frames.missing(value):
        return ""
    if key == "peak_memory_bytes":
        return f"{value / 2**20:.0f}"
    return frames.cell(value)


def table_rows(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells for a list of runs."""
    return [h for _, h in COLUMNS], [[_cell(k, r.get(k)) for k, _ in COLUMNS] for r in runs]


def pivot_rows(runs) -> list[dict]:
    """{model, device, p50_ms, run} of the newest successful benchmark of each model on each device."""
    ok = runs[(runs["status"] == "ok") & (runs["kind"] == "benchmark") & runs["p50_ms"].notna()]
    newest = ok.sort_values("id").groupby(["model_name", "device_name"], sort=False).tail(1)
    return [{"model": r.model_name, "device": r.device_name, "p50_ms": float(r.p50_ms), "run": int(r.id)}
            for r in newest.sort_values(["model_name", "device_name"]).itertuples()]


def pivot_markdown(runs) -> str:
    """Models down, devices across, p50 ms with the run it comes from; '' without a successful benchmark."""
    import pandas as pd

    cells = pivot_rows(runs)
    if not cells:
        return ""
    long = pd.DataFrame([{**c, "cell": f"{c['p50_ms']:.3f} (#{c['run']})"} for c in cells])
    wide = long.pivot(index="model", columns="device", values="cell").reset_index()
    wide.columns.name = None
    return frames.markdown(wide.fillna(""), {d: str for d in wide.columns[1:]})


def to_markdown(runs) -> str:
    """The pivot (when any benchmark succeeded), then every run as a GitHub-flavoured Markdown table."""
    header, rows = table_rows(frames.records(runs))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    table = "\n".join(lines) + "\n"
    pivot = pivot_markdown(runs)
    if not pivot:
        return table
    return f"## p50 latency (ms), {PIVOT_OF}\n\n{pivot}\n## runs\n\n{table}"


def to_csv(runs) -> str:
    """CSV with raw values and the store's column names: every stored column but the raw JSON documents."""
    return runs.drop(columns=list(RAW_JSON)).to_csv(index=False)


def to_json(runs) -> str:
    """{"runs": [every column but the raw JSON documents], "pivot": [{model, device, p50_ms, run}]}."""
    doc = {"runs": frames.records(runs.drop(columns=list(RAW_JSON))), "pivot_of": PIVOT_OF,
           "pivot": pivot_rows(runs)}
    return json.dumps(doc, indent=2) + "\n"


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


def to_html(runs) -> str:
    """A standalone HTML page: the plot (when matplotlib is present), the pivot and the table."""
    records = frames.records(runs)
    header, rows = table_rows(records)
    png = latency_plot_png(records)
    img = (f'<img alt="latency plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
           if png else "")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    cells = pivot_rows(runs)
    devices = sorted({c["device"] for c in cells})
    models = sorted({c["model"] for c in cells})
    at = {(c["model"], c["device"]): f"{c['p50_ms']:.3f} (#{c['run']})" for c in cells}
    pivot = ("<h2>p50 latency (ms), " + html.escape(PIVOT_OF) + "</h2><table><thead><tr><th>model</th>"
             + "".join(f"<th>{html.escape(d)}</th>" for d in devices) + "</tr></thead><tbody>"
             + "".join(f"<tr><td>{html.escape(m)}</td>" + "".join(f"<td>{at.get((m, d), '')}</td>" for d in devices)
                       + "</tr>" for m in models) + "</tbody></table><h2>runs</h2>") if cells else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>edgefarm report</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px;font-size:13px}</style></head><body><h1>edgefarm report</h1>"
            f"{img}{pivot}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n")


FORMATS = {"md": to_markdown, "markdown": to_markdown, "csv": to_csv, "json": to_json, "html": to_html}


def render(runs, fmt: str) -> str:
    """Render a runs frame (ResultsStore.dataframe("runs")) as md, csv, json or html."""
    return FORMATS[fmt](runs)


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
