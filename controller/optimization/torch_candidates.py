"""The candidates made by training the PyTorch model: structured pruning (uniform, and with ratios from the
device profile), quantization-aware training, distillation into a small student, and low-rank
factorization; each fine-tuned, exported to ONNX, and its training epochs reported as progress lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.errors import FarmError
from controller.optimization.candidates import (
    DISTILL_ALPHA,
    DISTILL_EPOCHS,
    DISTILL_LEARNING_RATE,
    DISTILL_TEMPERATURE,
    FINE_TUNE_EPOCHS,
    PRUNE_RATIOS,
    Candidate,
    after,
    quantize,
)
from controller.optimization.sources import Source


class TorchBuilders:
    """The training-time candidates of one source, in build order."""

    def __init__(self, source: Source, techniques: list[str], work: Path,
                 layer_ratios: Callable[[float], dict[str, float]] | None,
                 progress: Callable[[str], None] | None = None) -> None:
        assert source.torch is not None
        self.source, self.parts, self.techniques, self.work = source, source.torch, techniques, work
        self.layer_ratios, self.progress = layer_ratios, progress

    def candidates(self) -> list[Candidate]:
        out: list[Candidate] = []
        if "prune" in self.techniques:
            out += self.pruned()
        if "qat" in self.techniques:
            out.append(Candidate("qat-int8", ["qat", "int8"], self.build_qat))
        if "distill" in self.techniques:
            out += self.distilled()
        if "low-rank" in self.techniques:
            out.append(Candidate("low-rank-50", ["low-rank", "fine-tune"], self.build_low_rank))
        return out

    def epochs(self, name: str):
        return None if self.progress is None else (lambda line: self.progress(f"{name}: {line}"))

    def export(self, model, out: Path) -> None:
        from optimizers.pytorch.helpers import export_onnx, export_tflite  # torch only for these candidates

        if out.suffix == ".tflite":
            export_tflite(model, out, self.parts.input_shape)   # litert-torch (the --tflite twins)
        else:
            export_onnx(model, out, self.parts.input_shape)

    def pruned(self) -> list[Candidate]:
        variants = [(f"prune-{int(r * 100)}", r, False) for r in PRUNE_RATIOS]
        if self.layer_ratios is not None:
            variants.append((f"prune-{int(PRUNE_RATIOS[-1] * 100)}-profiled", PRUNE_RATIOS[-1], True))
        out = []
        for name, ratio, profiled in variants:
            steps = ["prune", "device-profile ratios", "fine-tune"] if profiled else ["prune", "fine-tune"]
            out.append(Candidate(name, steps, lambda path, n=name, r=ratio, p=profiled: self.build_pruned(path, n, r, p)))
            if "int8" in self.techniques and not profiled:
                pruned_path = self.work / f"{name}.onnx"
                out.append(Candidate(f"{name}+int8-minmax", [*steps, "int8"],
                                     after(pruned_path, quantize(pruned_path, "int8", self.source.calibration,
                                                                 "minmax"))))
        return out

    def build_pruned(self, out: Path, name: str, ratio: float, profiled: bool) -> dict:
        import torch

        from optimizers import Pruner
        from optimizers.pytorch.training import training_threads

        torch.manual_seed(0)
        ratios = self.layer_ratios(ratio) if profiled and self.layer_ratios else {}
        if profiled and not ratios:   # (built, it would be the uniform one under another name)
            raise FarmError(f"{name} takes its per-layer ratios from the baseline's device profile, and there is "
                            "none (the profile failed): the same command again profiles the baseline again")
        pruner = Pruner("structured", fine_tune_epochs=FINE_TUNE_EPOCHS)
        model = pruner.prune(self.parts.model, pruning_ratio=ratio, layer_ratios=ratios or None,
                             example_input=torch.zeros(self.parts.input_shape))
        with training_threads():
            pruner.fine_tune(model, self.parts.train, epochs=FINE_TUNE_EPOCHS, learning_rate=2e-3,
                             progress=self.epochs(f"fine-tuning {name}"))
        self.export(model, out)
        return {"params_before": pruner.report.params_before, "params_after": pruner.report.params_after,
                "layer_ratios": ratios, "fine_tune_epochs": FINE_TUNE_EPOCHS}

    def build_qat(self, out: Path) -> dict:
        import copy

        import torch

        from optimizers import QATTrainer, convert_to_int8
        from optimizers.pytorch.training import training_threads

        torch.manual_seed(0)
        trainer = QATTrainer(copy.deepcopy(self.parts.model), "int8")
        with training_threads():
            qat = trainer.train(self.parts.train, epochs=1, progress=self.epochs("quantization-aware training"))
        convert_to_int8(qat, self.source.calibration, output=out)
        return {"epochs": 1}

    def distilled(self) -> list[Candidate]:
        out = [Candidate("distill", ["distill"], self.build_student)]
        if "int8" in self.techniques:
            student_path = self.work / "distill.onnx"
            out.append(Candidate("distill+int8-minmax", ["distill", "int8"],
                                 after(student_path, quantize(student_path, "int8", self.source.calibration,
                                                              "minmax"))))
        return out

    def build_student(self, out: Path) -> dict:
        import torch

        from optimizers import KnowledgeDistiller, digits_student
        from optimizers.pytorch.training import training_threads

        torch.manual_seed(0)
        with training_threads():
            distiller = KnowledgeDistiller(self.parts.model, digits_student(), temperature=DISTILL_TEMPERATURE,
                                           alpha=DISTILL_ALPHA)
            student = distiller.train(self.parts.train, epochs=DISTILL_EPOCHS, learning_rate=DISTILL_LEARNING_RATE,
                                      progress=self.epochs("distilling the student"))
        self.export(student, out)
        return {"epochs": DISTILL_EPOCHS, "temperature": DISTILL_TEMPERATURE, "alpha": DISTILL_ALPHA,
                "learning_rate": DISTILL_LEARNING_RATE}

    def build_low_rank(self, out: Path) -> dict:
        import torch

        from optimizers import LowRankFactorizer, fine_tune
        from optimizers.pytorch.training import training_threads

        torch.manual_seed(0)
        factorizer = LowRankFactorizer()
        model = factorizer.factorize(self.parts.model, rank_ratio=0.5,
                                     inputs=torch.as_tensor(self.parts.train[0][:64]))
        with training_threads():
            fine_tune(model, self.parts.train, epochs=FINE_TUNE_EPOCHS, learning_rate=2e-3,
                      progress=self.epochs("fine-tuning low-rank-50"))
        self.export(model, out)
        return factorizer.report.to_json()
