"""Pruning of PyTorch models: structured (channels removed for real through Torch-Pruning's dependency
graph, so the exported model is smaller and faster), unstructured/magnitude (weights zeroed),
importance (Taylor criterion from training data) and iterative (prune_step + fine_tune, repeated)."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optimizers.errors import DataMismatch, OptimizerError, UnknownOption
from optimizers.onnx_torch.pipeline import OnnxPruneResult, PruneImages, prune_onnx
from optimizers.pytorch.helpers import count_params
from optimizers.pytorch.inputs import find_example_input, select_output
from optimizers.pytorch.pruning_bounds import REASON, GroupDidNotConverge, bounded_group_search
from optimizers.pytorch.pruning_importance import activation_importance, compensate, input_statistics
from optimizers.pytorch.pruning_safety import breaking_layers, known_unprunable, output_problem
from optimizers.pytorch.training import as_loader, fine_tune

log = logging.getLogger(__name__)

METHODS = ("structured", "unstructured", "magnitude", "importance", "iterative")
CRITERIA = ("l1_norm", "l2_norm", "importance", "activation")
ACTIVATION_SAMPLES = 32   # inputs the activation criterion's statistics are taken on, one at a time


@dataclass
class PruneReport:
    """What the last prune did."""

    method: str
    criterion: str
    pruning_ratio: float
    params_before: int
    params_after: int
    nonzero_after: int
    layer_ratios: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kept_whole: dict[str, str] = field(default_factory=dict)   # layers left unpruned, with the reason
    example_input: str = ""   # where the example input came from

    @property
    def params_ratio(self) -> float:
        """Remaining parameters / original (structured) or non-zero / original (unstructured)."""
        kept = self.params_after if self.method not in ("unstructured", "magnitude") else self.nonzero_after
        return kept / max(self.params_before, 1)

    def to_json(self) -> dict:
        return {**asdict(self), "params_ratio": self.params_ratio}


@dataclass
class _Step:
    """What one structured step prunes by: its ratio and criterion, the data and per-layer ratios, the output."""

    ratio: float
    criterion: str
    train_data: object
    layer_ratios: dict | None
    output: object


class Pruner:
    """`Pruner(method="structured").prune(model, pruning_ratio=0.5, criterion="l1_norm")` -> pruned copy.

    pruning_ratio is the share of prunable parameters to remove. Structured pruning removes output
    channels; since a layer's weights shrink with both its input and output channels, each layer
    loses 1 - sqrt(1 - ratio) of its channels. layer_ratios ({module name: ratio}) override it per layer,
    e.g. to prune harder where a device profile says the time is."""

    def __init__(self, method: str = "structured", criterion: str = "l1_norm", steps: int = 3,
                 fine_tune_epochs: int = 1, learning_rate: float = 1e-3, round_to: int | None = 8) -> None:
        if method not in METHODS:
            raise UnknownOption("pruning method", method, METHODS)
        if criterion not in CRITERIA:
            raise UnknownOption("pruning criterion", criterion, CRITERIA)
        self.method = method
        self.criterion = "importance" if method == "importance" else criterion
        self.steps = steps
        self.fine_tune_epochs = fine_tune_epochs
        self.learning_rate = learning_rate
        self.round_to = round_to  # keep channel counts multiples of 8: SIMD kernels (NCHWc) want them
        self.report: PruneReport | None = None
        self.kept_whole: dict[str, str] = {}   # layers the last structured step kept unpruned, with why
        self.keep_whole: dict[str, str] = {}   # layers the caller asked to keep (prune's keep_whole)
        self.example_source = ""

    def prune(self, model, pruning_ratio: float = 0.5, criterion: str | None = None, train_data=None,
              layer_ratios: dict[str, float] | None = None, example_input=None, output=None,
              keep_whole: dict[str, str] | None = None):
        """Return a pruned copy of `model` (the original is left as it is). The example input is
        `example_input`, else found (inputs.py); `output` selects the output tensor of a model that
        returns more (a key, attribute, index or function; `.logits` is found by itself). keep_whole:
        {module name: reason} for layers whose output channels must stay.

        An ONNX file (a path) is pruned by prune_onnx with its defaults, written beside it as
        NAME-pruned-RATIO.onnx; an OnnxPruneResult is returned."""
        if isinstance(model, (str, Path)):
            return Pruner(self.method, "activation", round_to=self.round_to).prune_onnx(model, Path(model).with_name(f"{Path(model).stem}-pruned-"
                                                                f"{int(round(pruning_ratio * 100))}.onnx"),
                                   pruning_ratio)
        criterion = criterion or self.criterion
        if criterion not in CRITERIA:
            raise UnknownOption("pruning criterion", criterion, CRITERIA)
        _check_ratio(pruning_ratio)
        self.keep_whole = dict(keep_whole or {})
        for name, r in (layer_ratios or {}).items():
            _check_ratio(r, f"layer_ratios['{name}']")
        modules = dict(model.named_modules())
        unknown = [n for n in (layer_ratios or {}) if n not in modules]
        if unknown:
            raise DataMismatch(f"layer_ratios names {', '.join(map(repr, unknown))}, which the model does not "
                               f"have; its layers are e.g. {', '.join(n for n in list(modules)[1:9])}")
        if (criterion == "importance" or self.method == "iterative") and train_data is None:
            raise DataMismatch(f"method={self.method!r} with criterion={criterion!r} needs train_data")
        before = count_params(model)
        pruned = copy.deepcopy(model)
        notes: list[str] = []
        if self.method in ("unstructured", "magnitude"):
            if criterion == "importance":
                raise OptimizerError("unstructured pruning ranks single weights by magnitude: use criterion "
                                     "'l1_norm' or 'l2_norm', or method='importance' for Taylor importance")
            _unstructured(pruned, pruning_ratio, criterion, layer_ratios or {})
            notes.append("unstructured pruning zeroes weights: dense runtimes (ONNX Runtime, TFLite, TensorRT) "
                         "run it no faster; only the compressed size shrinks")
        elif self.method == "iterative":
            done = 0.0
            for step in range(self.steps):
                # each step removes the same share of what is left, ending at pruning_ratio overall
                target = 1 - (1 - pruning_ratio) ** ((step + 1) / self.steps)
                step_ratio = 1 - (1 - target) / (1 - done)
                pruned = self.prune_step(pruned, step_ratio, criterion, train_data, layer_ratios, example_input,
                                         output=output)
                fine_tune(pruned, train_data, epochs=self.fine_tune_epochs, learning_rate=self.learning_rate)
                done = target
            notes.append(f"{self.steps} prune steps, each followed by {self.fine_tune_epochs} fine-tune epoch(s)")
        else:
            pruned = self.prune_step(pruned, pruning_ratio, criterion, train_data, layer_ratios, example_input,
                                     copy_model=False, output=output)
        kept = dict(self.kept_whole) if self.method not in ("unstructured", "magnitude") else {}
        self.report = PruneReport(self.method, criterion, pruning_ratio, before, count_params(pruned),
                                  count_params(pruned, nonzero=True), dict(layer_ratios or {}), notes, kept,
                                  self.example_source)
        log.info("pruned (%s, %s, %.2f): %d -> %d parameters", self.method, criterion, pruning_ratio, before,
                 self.report.params_after)
        return pruned

    def prune_step(self, model, ratio: float, criterion: str | None = None, train_data=None,
                   layer_ratios: dict[str, float] | None = None, example_input=None, copy_model: bool = True,
                   output=None):
        """One structured pruning step through Torch-Pruning's dependency graph. The pruned model is run on
        the example input and must give the original output shape; layers that cannot be pruned soundly
        are kept whole and listed in `self.kept_whole` with the reason."""
        criterion = criterion or self.criterion
        _check_ratio(ratio)
        model = copy.deepcopy(model) if copy_model else model
        found = find_example_input(model, example_input, train_data, output)
        pristine = copy.deepcopy(model)
        keep = {**known_unprunable(model), **(self.keep_whole or {})}
        self.example_source = found.source
        while True:   # each layer whose group search never ends is kept whole, then the step starts over
            try:
                with bounded_group_search():
                    model = self._checked_step(model, pristine, found, keep,
                                               _Step(ratio, criterion, train_data, layer_ratios, output))
                break
            except GroupDidNotConverge as exc:
                new = [n for n in [exc.name, *exc.coupled] if n not in keep]
                if not new:
                    raise OptimizerError(f"Torch-Pruning's dependency search on {type(model).__name__} did not "
                                         f"converge even with {exc.name} kept whole; use method='unstructured', "
                                         "or keep more layers whole with layer_ratios") from None
                for name in new:
                    keep[name] = REASON
                log.warning("pruning %s: keeping %d layer(s) whole: %s (%s)", type(model).__name__, len(new),
                            ", ".join(new), REASON)
                model = copy.deepcopy(pristine)
        if count_params(model) >= count_params(pristine):
            raise OptimizerError(f"nothing in {type(model).__name__} could be pruned: " + "; ".join(
                f"{n}: {why}" for n, why in list(keep.items())[:6]))
        self.kept_whole = keep
        model.zero_grad()
        model.eval()
        return model

    def _checked_step(self, model, pristine, found, keep: dict, step: _Step):
        """Prune `model` in place and run it; if its output breaks, find the layers that break it (on copies
        of `pristine`), keep them whole and prune a fresh copy once more. Returns the pruned model."""
        want = found.output_shape
        for attempt in range(2):
            self._structured(model, found.tensor, step.ratio, step.criterion, step.train_data, step.layer_ratios,
                             keep, step.output)
            problem = output_problem(model, found.tensor, want, step.output)
            if problem is None:
                return model
            if attempt == 1:
                raise OptimizerError(f"pruning {type(model).__name__} broke it ({problem}) even with "
                                     f"{len(keep)} layer(s) kept whole; prune fewer layers with layer_ratios or "
                                     "use method='unstructured'")
            log.info("the pruned model failed its check (%s): finding the layers that break it", problem)
            keep.update(breaking_layers(pristine, found.tensor, set(keep), want, step.output))
            model = copy.deepcopy(pristine)
        return model

    def _structured(self, model, example, ratio: float, criterion: str, train_data, layer_ratios, keep: dict,
                    output) -> None:
        """Prune `model` in place, the layers in `keep` left whole."""
        import torch
        import torch_pruning as tp

        with input_statistics(model, _samples(train_data, example) if criterion == "activation" else []) as stats:
            importance = {"l1_norm": lambda: tp.importance.MagnitudeImportance(p=1),
                          "l2_norm": lambda: tp.importance.MagnitudeImportance(p=2),
                          "importance": lambda: tp.importance.TaylorImportance(),
                          "activation": lambda: activation_importance(stats)}[criterion]()
        modules = dict(model.named_modules())
        ratio_dict = {modules[n]: _channel_ratio(r) for n, r in (layer_ratios or {}).items()}
        try:
            pruner = tp.pruner.MagnitudePruner(model, example, importance=importance,
                                               pruning_ratio=_channel_ratio(ratio), pruning_ratio_dict=ratio_dict,
                                               ignored_layers=[modules[n] for n in keep if n in modules],
                                               round_to=self.round_to,
                                               output_transform=lambda y: select_output(y, output))
            if criterion == "importance":
                model.train()
                x, y = next(iter(as_loader(train_data, 256, shuffle=True)))
                model.zero_grad()
                torch.nn.functional.cross_entropy(select_output(model(x), output), y).backward()
            if criterion == "activation":   # each group's removed channels' mean kept in the next biases
                for group in pruner.step(interactive=True):
                    compensate(group, stats)
                    group.prune()
            else:
                pruner.step()
        except (DataMismatch, OptimizerError, GroupDidNotConverge):
            raise
        except Exception as exc:  # tracing or dependency errors from Torch-Pruning
            raise OptimizerError(f"Torch-Pruning could not prune {type(model).__name__}: {type(exc).__name__}: "
                                 f"{str(exc)[:300]}; models with data-dependent control flow or custom ops "
                                 "cannot be traced, use method='unstructured' for those") from None

    def prune_onnx(self, path: str | Path, output: str | Path, pruning_ratio: float = 0.5,
                   input_shapes: dict[str, list[int]] | None = None, recovery_data=None, recovery=None,
                   check_data=None, progress=None) -> OnnxPruneResult:
        """Prune an ONNX model: converted to PyTorch (onnx2torch, checked against ONNX Runtime), made
        prunable by exact rewrites, its output layers kept whole, pruned, recovered toward the original's
        outputs on `recovery_data` (unlabelled images; RecoveryOptions in `recovery`) and exported to
        `output` with the original input/output names. See optimizers.onnx_torch.pipeline."""
        _check_ratio(pruning_ratio)
        if self.criterion not in ("activation", "l1_norm", "l2_norm"):
            raise OptimizerError(f"an ONNX model is pruned by criterion 'activation' (or 'l1_norm'/'l2_norm'); "
                                 f"{self.criterion!r} needs labels")
        return prune_onnx(path, self, pruning_ratio, output, input_shapes=input_shapes,
                          images=PruneImages(recovery_data, check_data), recovery=recovery, progress=progress)

    def fine_tune(self, model, train_data, epochs: int = 1, learning_rate: float | None = None, **kw):
        """Recover accuracy after pruning (returns the same model, trained in place); `kw` go to train()."""
        fine_tune(model, train_data, epochs=epochs, learning_rate=learning_rate or self.learning_rate, **kw)
        return model


def _samples(data, example) -> list:
    """Single-input batches of one sample each for the activation criterion: from `data` (inputs, or
    (inputs, labels)), else the example input."""
    import numpy as np
    import torch

    if data is None:
        return [example]
    x = data[0] if isinstance(data, tuple) else data
    x = torch.as_tensor(np.asarray(x[:ACTIVATION_SAMPLES]), dtype=example.dtype)
    return [x[i:i + 1] for i in range(len(x))]


def _check_ratio(ratio: float, what: str = "pruning_ratio") -> None:
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise OptimizerError(f"{what} must be in (0, 1) (the share of parameters to remove), got {ratio!r}")


def _channel_ratio(param_ratio: float) -> float:
    """Channels to remove per layer so that about param_ratio of its weights go (they scale with in x out)."""
    return 1 - math.sqrt(1 - param_ratio)


def _unstructured(model, ratio: float, criterion: str, layer_ratios: dict[str, float]) -> None:
    """Zero the smallest weights of every Conv/Linear, made permanent (for single weights the L1 and
    L2 norms rank alike)."""
    import torch
    from torch.nn.utils import prune

    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for name, module in targets:
        amount = layer_ratios.get(name, ratio)
        prune.l1_unstructured(module, "weight", amount=amount)
        prune.remove(module, "weight")

