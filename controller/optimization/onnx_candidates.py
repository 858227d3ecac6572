"""The training-time candidates of an ONNX model: pruned through its PyTorch conversion (onnx2torch), made
prunable by exact rewrites, recovered toward the original's outputs on unlabelled images (never the
evaluation data), exported with the original input/output names, alone and + INT8. A model that cannot be
converted gets no such candidate: the reason is listed and the other techniques go on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.optimization.candidates import PRUNE_RATIOS, Candidate, after, quantize
from controller.optimization.sources import Source
from optimizers.errors import OptimizerError
from optimizers.onnx_torch.convert import convert_onnx
from optimizers.onnx_torch.pipeline import CRITERION
from optimizers.onnx_torch.recovery import RecoveryOptions

NOT_FOR_ONNX = {
    "qat": "quantization-aware training needs labels to train on; an ONNX model without them gets INT8 "
           "post-training quantization (int8) and, with prune, pruning recovered by distillation",
    "low-rank": "low-rank factorization of an ONNX model is not built yet; prune makes it smaller the same way "
                "(its conversion, rewrites and recovery would serve it)",
}


STUDENT_RATIO = 0.7   # the distill technique's student of an ONNX model: its own copy, 70 % of the parameters pruned


class OnnxTorchBuilders:
    """prune-30, prune-50 and distill-pruned-70 (+ INT8) of an ONNX source, or the reason there are none."""

    def __init__(self, source: Source, techniques: list[str], work: Path, recovery: RecoveryOptions,
                 progress: Callable[[str], None] | None = None) -> None:
        self.source, self.techniques, self.work = source, techniques, work
        self.recovery, self.progress = recovery, progress

    def plan(self) -> tuple[list[Candidate], list[dict]]:
        skipped = [{"technique": t, "reason": why} for t, why in NOT_FOR_ONNX.items() if t in self.techniques]
        if "distill" in self.techniques and self.source.recovery is None:
            skipped.append({"technique": "distill", "reason": "an ONNX model's student (its own copy with 70 % of "
                            "the parameters pruned) is distilled on unlabelled images other than the evaluation "
                            "data: give --calibration-data as well as --eval-data"})
        ratios = [(f"prune-{int(r * 100)}", r) for r in PRUNE_RATIOS] if "prune" in self.techniques else []
        if "distill" in self.techniques and self.source.recovery is not None:
            ratios.append((f"distill-pruned-{int(STUDENT_RATIO * 100)}", STUDENT_RATIO))
        if not ratios:
            return [], skipped
        try:   # converted once here so that a model the converter cannot take fails in one line, up front
            convert_onnx(self.source.baseline, self.source.input_shapes, self.source.calibration.feeds[:4])
        except OptimizerError as exc:
            return [], [*skipped, *({"technique": t, "reason": str(exc)} for t in ("prune", "distill")
                                    if t in self.techniques)]
        out = []
        for name, ratio in ratios:
            steps = ["onnx2torch", "prune", "recover (distill)" if self.source.recovery is not None else "no recovery"]
            out.append(Candidate(name, steps, lambda path, n=name, r=ratio: self.build(path, n, r)))
            if "int8" in self.techniques:
                pruned = self.work / f"{name}.onnx"
                out.append(Candidate(f"{name}+int8-minmax", [*steps, "int8"],
                                     after(pruned, quantize(pruned, "int8", self.source.calibration, "minmax"))))
        return out, skipped

    def build(self, out: Path, name: str, ratio: float) -> dict:
        from optimizers import Pruner

        lines = None if self.progress is None else (lambda line: self.progress(f"recovering {name}: {line}"))
        result = Pruner("structured", CRITERION).prune_onnx(self.source.baseline, out, ratio,
                                                 input_shapes=self.source.input_shapes,
                                                 recovery_data=self.source.recovery, recovery=self.recovery,
                                                 check_data=self.source.calibration, progress=lines)
        details = result.to_json()
        details.pop("path")
        return details
