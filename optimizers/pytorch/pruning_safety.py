"""Structured pruning that never returns a broken model. Some layers cannot lose channels however the
dependency graph couples them: a classifier's outputs are the classes; attention layers split their width
into heads and reshape by it. Those are kept unpruned from the start. What else breaks a model (a reshape
or view by a fixed width, a squeeze-excitation gate Torch-Pruning mis-couples) is found by pruning each
layer's group alone on a copy and running it; the layers whose pruning fails are kept too, each listed
with the reason."""

from __future__ import annotations

import copy
import logging

from optimizers.pytorch.inputs import evaluating, select_output

log = logging.getLogger(__name__)

ATTENTION_WORDS = ("attention", "selfattention", "multiheadattention")
PROBE_CHANNELS = 8   # channels removed from a layer's group when testing whether pruning it is safe


def layer_kinds() -> tuple[type, ...]:
    """The module types Torch-Pruning's groups are rooted at here: Conv and Linear layers."""
    import torch

    return (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def prunable_layers(model) -> list[tuple[str, object]]:
    """(name, module) of the Conv and Linear layers, the roots of Torch-Pruning's groups."""
    kinds = layer_kinds()
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, kinds)]


def known_unprunable(model) -> dict[str, str]:
    """Layers kept whole before any trial: the classifier, and every layer inside an attention module."""
    import torch

    keep: dict[str, str] = {}
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if linears:
        keep[linears[-1]] = "the classifier: its outputs are the classes"
    for name, module in model.named_modules():
        kind = type(module).__name__.lower()
        if name and (isinstance(module, torch.nn.MultiheadAttention) or any(w in kind for w in ATTENTION_WORDS)):
            for child, _ in prunable_layers(module):
                keep.setdefault(f"{name}.{child}", f"inside the attention layer {name}: its width is split "
                                                   "into heads")
    return keep


def output_problem(model, example, want_shape: tuple[int, ...], output=None) -> str | None:
    """Why the model does not run on the example or changed its output shape; None when it is sound."""
    try:
        with evaluating(model):
            shape = tuple(select_output(model(example), output).shape)
    except Exception as exc:  # whatever a broken model raises
        return f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return None if shape == want_shape else f"the output shape changed from {list(want_shape)} to {list(shape)}"


def breaking_layers(model, example, skip: set[str], want_shape: tuple[int, ...], output=None) -> dict[str, str]:
    """Layers whose group breaks the model when pruned alone (tried on a copy each), with the reason."""
    import torch_pruning as tp

    bad: dict[str, str] = {}
    for name, _ in prunable_layers(model):
        if name in skip:
            continue
        trial = copy.deepcopy(model).eval()
        layer = trial.get_submodule(name)
        try:
            graph = tp.DependencyGraph().build_dependency(trial, example, output_transform=lambda y: select_output(
                y, output))
            pruner = graph.get_pruner_of_module(layer)
            channels = pruner.get_out_channels(layer) if pruner else None
            if not channels or channels <= PROBE_CHANNELS:
                continue
            group = graph.get_pruning_group(layer, pruner.prune_out_channels, list(range(PROBE_CHANNELS)))
            if not graph.check_pruning_group(group):
                continue
            group.prune()
        except Exception as exc:  # Torch-Pruning's own failure on this layer: keep it whole
            bad[name] = f"Torch-Pruning cannot prune it ({type(exc).__name__}: {str(exc)[:120]})"
            continue
        problem = output_problem(trial, example, want_shape, output)
        if problem:
            bad[name] = f"pruning it breaks the model ({problem})"
    log.info("pruning safety: %d layer(s) break the model when pruned: %s", len(bad), ", ".join(bad))
    return bad
