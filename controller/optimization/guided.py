"""Profile-guided pruning ratios: the baseline's per-layer profile on the device maps back to the PyTorch
modules behind its Conv layers, and the layers taking more of the measured time are pruned harder."""

from __future__ import annotations

import math


def module_name(onnx_node: str) -> str:
    """The PyTorch module behind a torch.onnx node name: '/features/features.1/conv/conv.0/Conv' ->
    'features.1.conv.0'."""
    parts = [p for p in onnx_node.strip("/").split("/")[:-1] if p]
    if not parts:
        return ""
    full = parts[0]
    for prev, cur in zip(parts, parts[1:]):
        full += cur[len(prev):] if cur.startswith(prev + ".") else "." + cur
    return full


def ratios_from_profile(layers: list[dict], modules: set[str], ratio: float) -> dict[str, float]:
    """Per-layer pruning ratios: layers taking more of the measured time are pruned harder (ratio scaled by
    the square root of time share / mean share, clipped to [0.05, 0.85]); others more lightly."""
    times: dict[str, float] = {}
    for row in layers:
        if row.get("op_type") not in ("Conv", "FusedConv"):
            continue
        for node in row.get("source_nodes") or [row["name"]]:
            name = module_name(node)
            if name in modules:
                times[name] = times.get(name, 0.0) + row["time_ms"] / max(len(row.get("source_nodes") or [1]), 1)
    total = sum(times.values())
    if not times or total <= 0:
        return {}
    mean = total / len(times)
    return {n: round(min(0.85, max(0.05, ratio * math.sqrt(t / mean))), 3) for n, t in times.items()}


def conv_modules(model) -> set[str]:
    """Names of the Conv2d modules of a PyTorch model (the layers the ratios are for)."""
    import torch  # torch only for the PyTorch example's candidates

    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
