"""A per-layer diff of profile runs, aligned on the graph nodes behind each row.

A profile row is a kernel the runtime ran, named by the runtime; the graph nodes behind it are its
`source_nodes` (optimizers/graph/layer_names.py). Two runs of one model name their rows alike, but a quantized or
rewritten copy, or another runtime version, fuses differently: `conv` and `relu` may be one kernel on one
side and two on the other. Rows of every side that share a graph node (or a runtime name) are joined into
one aligned layer and their times summed, so each aligned layer covers the same nodes on every side. A row
without source nodes (the FP16 kernels ONNX Runtime wraps in casts) is placed by its runtime name's base."""

from __future__ import annotations

from collections.abc import Sequence

from controller.measure import frames
from optimizers.graph.layer_names import RUNTIME_SUFFIX, layer_label, row_nodes

INSERTED_CAST = "InsertedPrecisionFreeCast_"


class _Joined:
    """Union-find over row tokens ('node:conv', 'name:Conv_0_nchwc')."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, token: str) -> str:
        root = self.parent.setdefault(token, token)
        while root != self.parent[root]:
            root = self.parent[root]
        self.parent[token] = root
        return root

    def join(self, tokens: list[str]) -> str:
        root = self.find(tokens[0])
        for t in tokens[1:]:
            other = self.find(t)
            if other != root:
                self.parent[other] = root
        return root


def runtime_base(name: str) -> str:
    """The graph node a runtime name was made from, where ONNX Runtime left it readable: without its layout
    and fusion suffixes, the '.out' of a fused node and the prefix of the casts it inserts around an FP16
    node it runs in FP32 ('InsertedPrecisionFreeCast_BatchNormalization_13.out_nchwc' -> 'BatchNormalization_13')."""
    base = RUNTIME_SUFFIX.sub("", name)
    base = base[: -len(".out")] if base.endswith(".out") else base
    return base.removeprefix(INSERTED_CAST)


def _tokens(row: dict) -> list[str]:
    nodes = [*row_nodes(row), runtime_base(row["name"])]
    return [f"node:{n}" for n in dict.fromkeys(nodes)] + [f"name:{row['name']}"]


def aligned_groups(layer_sets: Sequence[Sequence[dict]]) -> list[list[list[dict]]]:
    """The aligned layers: for each, every side's rows in it (an empty list where a side has none), in the
    order the layers first appear (side by side, slowest row first)."""
    joined = _Joined()
    for rows in layer_sets:
        for row in rows:
            joined.join(_tokens(row))
    order: dict[str, list[list[dict]]] = {}
    for side, rows in enumerate(layer_sets):
        for row in rows:
            group = order.setdefault(joined.find(_tokens(row)[0]), [[] for _ in layer_sets])
            group[side].append(row)
    return list(order.values())


def _label(group: list[list[dict]]) -> tuple[str, str]:
    nodes = list(dict.fromkeys(n for rows in group for r in rows for n in r.get("source_nodes") or []))
    nodes = nodes or list(dict.fromkeys(runtime_base(r["name"]) for rows in group for r in rows))
    per_side = ["+".join(dict.fromkeys(r.get("op_type") or "?" for r in rows)) for rows in group if rows]
    return layer_label(nodes[0], nodes), " / ".join(dict.fromkeys(per_side))


def layer_diff(keys: Sequence[str], layer_sets: Sequence[Sequence[dict]]):
    """A DataFrame, one row per aligned layer: `layer` (its first graph node, '+N fused' for more), `op_type`
    (each side's, when they differ), `{KEY}_ms` per side (summed over the side's rows in the layer; missing
    where the side has none), and for every side after the first `{KEY}_delta_ms` (minus the first side's)
    and `{KEY}_speedup` (the first side's time over this side's). Sorted by the first side's time, then by
    the slowest side's."""
    import pandas as pd

    rows = []
    for group in aligned_groups(layer_sets):
        label, ops = _label(group)
        row = {"layer": label, "op_type": ops}
        times = [sum(r.get("time_ms") or 0.0 for r in side) if side else None for side in group]
        for key, t in zip(keys, times):
            row[f"{key}_ms"] = t
        for key, t in list(zip(keys, times))[1:]:
            row[f"{key}_delta_ms"] = t - times[0] if t is not None and times[0] is not None else None
            row[f"{key}_speedup"] = times[0] / t if t and times[0] is not None else None
        rows.append(row)
    columns = ["layer", "op_type", *(f"{k}_ms" for k in keys),
               *(c for k in keys[1:] for c in (f"{k}_delta_ms", f"{k}_speedup"))]
    df = pd.DataFrame(rows, columns=columns)
    if len(df):
        slowest = df[[f"{k}_ms" for k in keys]].max(axis=1)
        df = df.assign(_first=df[f"{keys[0]}_ms"].fillna(-1.0), _slowest=slowest) \
            .sort_values(["_first", "_slowest"], ascending=False).drop(columns=["_first", "_slowest"])
    return df.reset_index(drop=True)


def layers_markdown(df, top: int = 25) -> str:
    """The slowest `top` aligned layers (0: all) as Markdown, with a line of totals and what was left out."""
    import pandas as pd

    keys = [c[:-3] for c in df.columns if c.endswith("_ms") and not c.endswith("_delta_ms")]
    shown = df if top <= 0 else df.head(top)
    total = {"layer": "total (all layers)", "op_type": ""}
    sums = {k: df[f"{k}_ms"].sum(min_count=1) for k in keys}
    for k in keys:
        total[f"{k}_ms"] = sums[k]
    for k in keys[1:]:
        total[f"{k}_delta_ms"] = sums[k] - sums[keys[0]]
        total[f"{k}_speedup"] = sums[keys[0]] / sums[k] if sums[k] else None
    view = pd.concat([shown, pd.DataFrame([total])], ignore_index=True)
    formats = {c: (lambda v: f"{v:+.3f}") for c in df.columns if c.endswith("_delta_ms")}
    formats.update({c: (lambda v: f"{v:.3f}x") for c in df.columns if c.endswith("_speedup")})
    headers = {c: c.replace("_delta_ms", " Δ ms").replace("_speedup", " speedup").replace("_ms", " ms")
               for c in df.columns}
    text = frames.markdown(view, formats, {**headers, "op_type": "op"})
    if len(df) > len(shown):
        text += f"\n{len(df) - len(shown)} more aligned layers (`--top 0` shows them all)\n"
    return text
