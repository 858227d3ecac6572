"""Pruning an ONNX model end to end: convert (convert.py), make prunable (prunable.py), prune with a
`Pruner`, recover on unlabelled images (recovery.py), and export back to ONNX with the original input and
output names and the shapes it was pruned at; the result cached by the model's digest and the recipe."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.paths import cache_root
from optimizers.errors import ModelError
from optimizers.onnx_torch.convert import ConvertedModel, convert_onnx, fixed_shapes, output_error, quietly
from optimizers.onnx_torch.prunable import make_prunable
from optimizers.onnx_torch.recovery import RecoveryOptions, RecoveryReport, as_images, recover

log = logging.getLogger(__name__)

RECIPE_VERSION = "3"   # bump when a change to conversion, rewrites, pruning or recovery changes the result
NARROW = 4             # layers of at most NARROW x round_to channels are kept whole (YOLOv8n's 16 and 32)
CRITERION = "activation"   # what an ONNX model is pruned by (optimizers/pytorch/pruning_importance.py)


@dataclass
class OnnxPruneResult:
    """A pruned ONNX model and what was done to make it."""

    path: Path
    params_before: int
    params_after: int
    layers: dict[str, list[int]]            # module -> [channels before, after], for every pruned layer
    kept_whole: dict[str, str]
    rewrites: dict[str, int]
    conversion_error: float
    recovery: RecoveryReport | None = None
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _digest(path: Path, shapes: dict, ratio: float, pruner, images: list, options) -> str:
    h = hashlib.sha256()
    h.update(Path(path).read_bytes())
    h.update(json.dumps([RECIPE_VERSION, shapes, ratio, pruner.method, pruner.criterion, pruner.round_to,
                         options.to_json() if options else None], sort_keys=True).encode())
    for data in images:   # the recovery images train it; the statistics images choose the channels
        if data is not None:
            h.update(np.ascontiguousarray(as_images(data)).tobytes())
    return h.hexdigest()[:24]


def _channels(module) -> dict[str, int]:
    import torch

    return {n: m.out_channels if hasattr(m, "out_channels") else m.out_features for n, m in module.named_modules()
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d,
                              torch.nn.Linear))}


def export_like(module, converted: ConvertedModel, out: Path, opset: int = 17) -> Path:
    """`module` as a one-file ONNX model with `converted`'s input and output names, at its input shape."""
    import torch

    example = torch.zeros(converted.input_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(module, (example,), str(out), input_names=converted.input_names,
                              output_names=converted.output_names, opset_version=opset, dynamo=False)
    except Exception as exc:   # torch.onnx raises many types
        raise ModelError(f"could not export the pruned {converted.path.name} to ONNX: {str(exc)[:300]}") from None
    return out


@dataclass
class PruneImages:
    """The images of a prune: `recovery` (unlabelled, never the evaluation images: trained on; an
    N x C x H x W array or a Dataset of feeds) and `check` (a Dataset or a list of feeds: the conversion is
    checked on them, and without recovery images the activation criterion's statistics come from them)."""

    recovery: object = None
    check: object = None


@quietly
def prune_onnx(path: str | Path, pruner, pruning_ratio: float, output: str | Path,
               input_shapes: dict[str, list[int]] | None = None, images: PruneImages | None = None,
               recovery: RecoveryOptions | None = None,
               progress: Callable[[str], None] | None = None) -> OnnxPruneResult:
    """Prune the ONNX model at `path` with `pruner` (an optimizers.Pruner; its criterion is best "activation",
    which takes its statistics on the recovery images, else the check inputs) and write it to `output`.
    Layers of at most NARROW x round_to channels and the output layers are kept whole.
    Without recovery images the pruned model is written unrecovered."""
    import onnx
    import torch

    path, output = Path(path), Path(output)
    images = images or PruneImages()
    recovery_data, check_data = images.recovery, images.check
    options = (recovery or RecoveryOptions()) if recovery_data is not None else None
    check = None if check_data is None else [dict(f) for f in getattr(check_data, "feeds", check_data)][:8]
    _, shapes = fixed_shapes(onnx.load(str(path)), input_shapes)   # (the key needs them; converting can wait)
    key = _digest(path, shapes, pruning_ratio, pruner, [recovery_data, check], options)
    cached_model = cache_root() / "pruned-onnx" / f"{key}.onnx"
    if cached_model.exists() and cached_model.with_suffix(".json").exists():
        shutil.copyfile(cached_model, output)
        saved = json.loads(cached_model.with_suffix(".json").read_text())
        rec = saved.pop("recovery", None)
        saved.update(path=output, cached=True, recovery=RecoveryReport(**rec) if rec else None)
        if progress:
            progress(f"pruned and recovered before: taken from the cache ({cached_model})")
        return OnnxPruneResult(**saved)
    converted = convert_onnx(path, shapes, check)
    teacher = converted.module
    prepared = make_prunable(teacher)
    feed = (check or [{converted.input_names[0]: np.zeros(converted.input_shape, np.float32)}])[0]
    rewritten_error = output_error(converted, feed, module=teacher)
    before = _channels(teacher)
    narrow = {n: f"{c} channels: rounded to {pruner.round_to}, it would lose {pruner.round_to} at once"
              for n, c in before.items() if pruner.round_to and c <= NARROW * pruner.round_to}
    statistics = as_images(recovery_data if recovery_data is not None else check or [feed])
    student = pruner.prune(teacher, pruning_ratio=pruning_ratio, keep_whole={**narrow, **prepared.heads},
                           train_data=statistics,
                           example_input=torch.from_numpy(np.ascontiguousarray(feed[converted.input_names[0]])))
    after = _channels(student)
    layers = {n: [before[n], after[n]] for n in after if n in before and after[n] != before[n]}
    report = None
    notes = [(f"converted by onnx2torch after onnxslim (max error {converted.max_error:.1e} of the output "
              f"range; {rewritten_error:.1e} after the rewrites)")]
    if options is not None:
        report = recover(student, copy.deepcopy(teacher), recovery_data, options, progress)
    else:
        notes.append("not recovered: no unlabelled images other than the evaluation data were given")
    export_like(student, converted, output)
    result = OnnxPruneResult(output, pruner.report.params_before, pruner.report.params_after, layers,
                             dict(pruner.report.kept_whole), prepared.sites, converted.max_error, report,
                             False, notes)
    cached_model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(output, cached_model)
    saved = result.to_json()
    del saved["path"], saved["cached"]
    cached_model.with_suffix(".json").write_text(json.dumps(saved))
    return result
