"""The results store's tables as pandas DataFrames, and DataFrames as paste-able Markdown.

pandas is imported when a frame is first made (it is in the farm extra; bench and profile never need it).
Markdown is written here rather than by `DataFrame.to_markdown`, which needs the tabulate package: a table
is ten lines, and a dependency less keeps the install light."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from controller.errors import UsageError
from optimizers.graph.layer_names import layer_label

FILTERS = {"runs": ("model", "device", "kind", "status", "limit"), "layers": ("run",),
           "candidates": ("optimize_key", "device")}

# every column of the runs table, statistics in reading order, the raw JSON documents last; `times` is the
# number of per-inference times the store holds for the run
RUN_FRAME_COLUMNS = (
    "id", "created_at", "kind", "status", "error_code", "error", "model_name", "model_path", "model_digest",
    "model_size", "device_name", "device_class", "device_fingerprint", "backend", "backend_version", "threads",
    "settings_key", "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "std_ms", "cv",
    "iterations", "times", "load_ms", "first_inference_ms", "peak_memory_bytes", "flags", "reference_digest",
    "settings_json", "result_json", "device_json")
LAYER_FRAME_COLUMNS = ("run_id", "rank", "name", "label", "op_type", "time_ms", "percent", "flops", "memory_bytes",
                       "source_nodes", "input_shapes", "output_shapes", "model_name", "model_digest",
                       "device_name", "kind")
CANDIDATE_FRAME_COLUMNS = (
    "optimize_key", "device_name", "name", "created_at", "techniques", "status", "reason", "model_digest",
    "model_path", "size_bytes", "p50_ms", "p90_ms", "p99_ms", "cv", "flags", "accuracy", "fidelity",
    "paired_speedup", "paired_low", "paired_high", "run_id", "detail_json")
COLUMNS = {"runs": RUN_FRAME_COLUMNS, "layers": LAYER_FRAME_COLUMNS, "candidates": CANDIDATE_FRAME_COLUMNS}


def check_filters(table: str, filters: dict) -> None:
    """A table the store has and filters it takes, else one sentence naming them."""
    if table not in FILTERS:
        raise UsageError(f"the results store has no table {table!r}: ask for 'runs', 'layers' or 'candidates'")
    unknown = sorted(set(filters) - set(FILTERS[table]))
    if unknown:
        raise UsageError(f"dataframe({table!r}) takes the filters {', '.join(FILTERS[table])}, not "
                         f"{', '.join(unknown)}")


def parse_layer(row: dict) -> dict:
    """A stored layer row with its JSON lists parsed and its label (the graph node behind it)."""
    out = dict(row)
    for key in ("input_shapes", "output_shapes", "source_nodes"):
        out[key] = json.loads(row.get(key) or "[]")
    out["label"] = layer_label(out["name"], out["source_nodes"])
    return out


def _candidate(row: dict) -> dict:
    paired = (json.loads(row.get("detail_json") or "null") or {}).get("paired") or {}
    return {**row, "techniques": json.loads(row.get("techniques") or "[]"), "paired_speedup": paired.get("median"),
            "paired_low": paired.get("low"), "paired_high": paired.get("high")}


def frame(table: str, rows: Sequence[dict]):
    """Rows of a store table as a DataFrame with every column (nullable dtypes: an integer column with gaps
    stays integer)."""
    import pandas as pd

    if table == "candidates":
        rows = [_candidate(r) for r in rows]
    df = pd.DataFrame.from_records(list(rows), columns=list(COLUMNS[table]))
    return df.convert_dtypes() if len(df) else df


def records(df) -> list[dict]:
    """A frame as JSON-ready rows (missing values as None)."""
    return json.loads(df.to_json(orient="records", double_precision=10))


def missing(value) -> bool:
    """None, NaN or pandas' NA (a list is never missing)."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def cell(value, digits: int = 3) -> str:
    """One Markdown cell: blank when missing, floats with `digits` decimals, '|' escaped."""
    if missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(df, formats: dict[str, Callable] | None = None, headers: dict[str, str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of a frame: numbers (and the columns in `formats`) right-aligned,
    `formats` {column: fn(value) -> str} where 3 decimals do not suit, `headers` {column: title}."""
    formats, headers = formats or {}, headers or {}
    cols = list(df.columns)
    numeric = [df[c].dtype.kind in "iuf" or c in formats for c in cols]
    lines = ["| " + " | ".join(headers.get(c, str(c)) for c in cols) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in df.itertuples(index=False):
        cells = [cell(v) if missing(v) or c not in formats else formats[c](v) for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
