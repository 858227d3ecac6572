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
