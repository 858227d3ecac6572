"""The comparison table of `farmctl optimize`: Markdown, CSV, and an HTML page with the latency vs
accuracy/fidelity plot (optimize_plot); plus summary.json (the --json object)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

from agent.stats import ratio_texts
from controller.optimization.plot import plot_png

HEADER = ["device", "candidate", "techniques", "status", "p50 ms", "p90 ms", "p99 ms", "speedup", "speedup 95 % CI",
          "size MB", "accuracy", "fidelity", "metric", "meets", "reason"]


def _rows(result) -> list[dict]:
    out = []
    for d in result.devices:
        for row in [d.baseline, *d.candidates]:
            lat = row.latency_ms or {}
            out.append({"device": d.device, "candidate": row.name, "techniques": " + ".join(row.techniques),
                        "status": row.status, "p50 ms": lat.get("p50"), "p90 ms": lat.get("p90"),
                        "p99 ms": lat.get("p99"), "speedup": row.speedup,
                        "speedup 95 % CI": ("-".join(ratio_texts(*row.speedup_ci)) if row.speedup_ci else None),
                        "size MB": row.size_bytes / 1e6 if row.size_bytes else None,
                        "accuracy": row.accuracy, "fidelity": row.fidelity, "metric": row.metric_value,
                        "meets": row.meets_constraints, "reason": row.reason or "",
                        "chosen": row.name == d.chosen})
    return out


def _fmt(key: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{ratio_texts(value)[0]}x" if key == "speedup" else f"{value:.4f}" if key in ("accuracy", "fidelity", "metric") \
            else f"{value:.3f}"
    return str(value)


def _label(column: str, result) -> str:
    """A column's heading; the metric column names the --metric used."""
    return f"metric: {result.metric}" if column == "metric" and getattr(result, "metric", None) else column


def to_markdown(result) -> str:
    """One table, all devices, the chosen row in bold."""
    lines = ["| " + " | ".join(_label(h, result) for h in HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in _rows(result):
        cells = [_fmt(h, r[h]).replace("|", "\\|") for h in HEADER]
        if r["chosen"]:
            cells[1] = f"**{cells[1]}** (chosen)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(result) -> str:
    """The same table with raw values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*HEADER, "chosen"])
    writer.writeheader()
    writer.writerows(_rows(result))
    return buf.getvalue()


def to_html(result, png: bytes | None) -> str:
    """A standalone page: the choice, the plot and the table."""
    rows = _rows(result)
    head = "".join(f"<th>{html.escape(_label(h, result))}</th>" for h in HEADER)
    body = "".join(("<tr style='font-weight:bold;background:#eef'>" if r["chosen"] else "<tr>")
                   + "".join(f"<td>{html.escape(_fmt(h, r[h]))}</td>" for h in HEADER) + "</tr>" for r in rows)
    img = (f'<img alt="latency vs quality" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
           if png else "")
    skipped = "".join(f"<li>{html.escape(s['technique'])}: {html.escape(s['reason'])}</li>" for s in result.skipped)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>edgefarm optimize</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px;font-size:13px}</style></head><body>"
            f"<h1>edgefarm optimize: {html.escape(result.model)}</h1>"
            f"<pre>{html.escape(result_summary(result))}</pre>{img}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<h2>Skipped techniques</h2><ul>{skipped or '<li>none</li>'}</ul>"
            f"<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul></body></html>\n")


def write_reports(result) -> Path:
    """report.md, report.csv, report.html, latency-vs-quality.png and summary.json in the output folder;
    returns the HTML report's path."""
    out = Path(result.out_dir)
    html_path = out / "report.html"
    result.report = html_path
    (out / "report.md").write_text(to_markdown(result))
    (out / "report.csv").write_text(to_csv(result))
    png = plot_png(result)
    if png:
        (out / "latency-vs-quality.png").write_bytes(png)
    html_path.write_text(to_html(result, png))
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=1))
    return html_path


def _speed(row, base) -> str:
    """The chosen row's speed, each number saying what it is: the paired speedup and the p50s of the loops it
    comes from (both models in the same loops)."""
    ratio = row.ratio()
    speed = f"{ratio.text()} faster" if ratio else f"{ratio_texts(row.speedup)[0]}x faster"
    p50s = row.paired.p50s() if row.paired else None
    if p50s:
        return f"{speed}, timed in the same loops as the baseline (p50 {p50s[1]:.3f} ms vs {p50s[0]:.3f} ms there)"
    return (f"{speed}, timed in the same loops as the baseline (p50 {row.p50:.3f} ms in its least disturbed loop, "
            f"baseline {base.p50:.3f} ms in its own)")


def keep_line(d) -> str:
    """Why a device's model is kept as it is (DeviceResult.chosen == "baseline"), with the closest candidates."""
    return (f"{d.device}: keep the model as it is: no candidate was measurably faster while meeting every "
            f"constraint, so it is the fastest model that meets them -> {d.artifact} (a copy of it). "
            "Closest: " + " | ".join(d.closest[:3]))


def result_summary(result) -> str:
    """A few lines for a person: the choice per device, or why there is none."""
    lines = []
    for d in result.devices:
        if d.chosen == "baseline":
            lines.append(keep_line(d))
        elif d.chosen:
            row = d.row(d.chosen)
            q = (f"accuracy {row.accuracy:.4f} (baseline {d.baseline.accuracy:.4f})"
                 if row.accuracy is not None else f"fidelity {row.fidelity:.4f}")
            lines.append(f"{d.device}: chose {d.chosen}: {_speed(row, d.baseline)}, {q}, "
                         f"{row.size_bytes / 1e6:.2f} MB -> {d.artifact}")
        else:
            lines.append(f"{d.device}: {d.failure}")
    lines += [f"lost: {item}" for item in result.lost]
    lines += [f"note: the fidelity above was measured on {n.removeprefix('data: ')}" for n in result.notes
              if n.startswith("data: synthetic")]
    failed = [f"{r.name} on {d.device}" for d in result.devices for r in d.candidates
              if r.status == "failed" and r.reason.startswith("measurement failed")]
    if result.lost or failed:
        lines.append("decided with what was measured; the same command again measures what was lost"
                     + (f" ({', '.join(failed)}: measurement failed)" if failed else "")
                     + ", the rest comes from the store")
    resumed = sum(1 for d in result.devices for r in [d.baseline, *d.candidates] if r.resumed)
    if resumed:
        lines.append(f"{resumed} measurement(s) came from the store: an earlier run with the same model, data, "
                     "techniques and settings. --remeasure times and evaluates them again (builds reused); "
                     "--fresh builds and measures everything again.")
    if result.report:
        lines.append(f"report: {result.report}")
    return "\n".join(lines)
