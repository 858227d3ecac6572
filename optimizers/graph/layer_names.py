"""How a runtime's profile rows are named back to graph nodes, shared by the profiler, the measured
precision and the controller's tables (a leaf module: it imports nothing of ours)."""

from __future__ import annotations

import re

# Suffixes ONNX Runtime appends to the nodes it rewrites (NCHWc layout, NHWC kernels, QDQ fusion tokens)
RUNTIME_SUFFIX = re.compile(r"(_nchwc|_nhwc|_token_\d+)+$")


def layer_label(name: str, source_nodes: list[str] | None) -> str:
    """A profile row named by the graph node behind it ('Conv_9 +2 fused'), not by the runtime's name for
    it ('Clip_11.out_nchwc'): the same in the CLI's table, the Python results and the plots."""
    src = list(source_nodes or []) or [name]
    return src[0] + (f" +{len(src) - 1} fused" if len(src) > 1 else "")


def row_nodes(row: dict) -> list[str]:
    """The graph nodes behind a profile row: its source_nodes, else its own name without the runtime's
    suffixes."""
    return list(row.get("source_nodes") or []) or [RUNTIME_SUFFIX.sub("", row["name"])]


def node_times(rows: list[dict]) -> dict[str, float]:
    """{graph node: ms} from profile rows (`name`, `time_ms`, `source_nodes`): a row the runtime fused
    from several nodes is split evenly over them (what MixedPrecisionOptimizer's layer_times_ms takes)."""
    out: dict[str, float] = {}
    for row in rows:
        nodes = row_nodes(row)
        for node in nodes:
            out[node] = out.get(node, 0.0) + row["time_ms"] / len(nodes)
    return out
