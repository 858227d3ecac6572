"""The plan of `farmctl optimize`: which candidates to make from which techniques, and how each one is
built (by the optimizers' classes) into a single-file ONNX model. Techniques that cannot apply are
listed with the reason."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import FarmError
from controller.optimization.sources import Source
from optimizers.quantization import COMPUTE_OP_TYPES

log = logging.getLogger(__name__)

# technique name -> what it does (the --techniques vocabulary)
TECHNIQUES = {
    "fuse": "operator rewrites + BatchNorm folding + activation fusion (ONNX Runtime's fused kernels)",
    "fp16": "FP16 weights and activations (float32 inputs and outputs kept)",
    "int8": "INT8 static QDQ, per-channel weights, calibrated with minmax, kl (entropy) and percentile; with "
            "minmax also signed activations (S8S8) and only the compute ops quantized, so measurements pick the "
            "types and op set per model and device",
    "int8-measured": "the fastest INT8 static candidate with the layers the device profile measured slower in "
                     "INT8 than in float kept float (and, if fidelity needs it, those losing most per ms saved)",
    "rewrite": "each operator rewrite that changes the model (SiLU, hard-swish, GELU, x/c), alone and before INT8",
    "int8-dynamic": "INT8 weights, activations quantized at run time",
    "int4": "INT4 weight-only MatMul (MatMulNBits)",
    "mixed-precision": "INT8 with the layers of most error per measured ms kept in float (when INT8 alone "
                       "breaks the accuracy/fidelity constraint)",
    "prune": "structured channel pruning (Torch-Pruning), 30 % and 50 %, fine-tuned, alone and + INT8; "
             "and 50 % with per-layer ratios from the device profile",
    "qat": "quantization-aware training, then INT8",
    "distill": "a small student trained on the teacher's soft targets (Hinton), alone and + INT8",
    "low-rank": "SVD factorization of Linear and 1x1 Conv layers, fine-tuned",
}
TRAINING = ("prune", "qat", "distill", "low-rank")
CALIBRATIONS = ("minmax", "kl", "percentile")
# what a rerun takes from an earlier run of the same key: everything (resume), the builds (--remeasure),
# nothing (--fresh)
REUSE_ALL, REUSE_BUILDS, REUSE_NOTHING = "all", "builds", "nothing"
REUSE_CHOICES = (REUSE_ALL, REUSE_BUILDS, REUSE_NOTHING)
REWRITE_CANDIDATES = ("swish", "hardswish", "gelu", "div_to_mul")  # the `rewrite` technique's, when they match
PRUNE_RATIOS = (0.3, 0.5)
FINE_TUNE_EPOCHS = 2
# the digits student's recipe (Hinton loss); on the example's validation split, student seeds 0/1/2 and
# 1 or 2 training threads, it scores above the teacher (optimizers.digits.digits_student)
DISTILL_EPOCHS = 8
DISTILL_TEMPERATURE = 4.0
DISTILL_ALPHA = 0.7
DISTILL_LEARNING_RATE = 1e-2


@dataclass
class Candidate:
    """One optimized model to make and measure."""

    name: str
    techniques: list[str]
    build: Callable[[Path], dict] = field(repr=False)  # writes the model at the path; returns details
    refinement: bool = False                           # built only after measurements ask for it
    suffix: str = ".onnx"                              # ".tflite" for the LiteRT twins (--tflite)


CALIBRATION_CHOICES = tuple(f"int8-{alg}" for alg in CALIBRATIONS)  # one calibration instead of all three


def parse_techniques(text: str | list[str] | None) -> list[str]:
    """The --techniques list (comma separated), checked against TECHNIQUES (int8-minmax, int8-kl and
    int8-percentile pick single calibrations of int8)."""
    if text is None:
        return list(TECHNIQUES)
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in TECHNIQUES and t not in CALIBRATION_CHOICES]
    if unknown:
        raise FarmError(f"unknown technique(s) {', '.join(map(repr, unknown))}; --techniques takes a comma "
                        f"separated list of: {', '.join(TECHNIQUES)} (or one calibration: "
                        f"{', '.join(CALIBRATION_CHOICES)})")
    if not items:
        raise FarmError(f"--techniques is empty; choose from: {', '.join(TECHNIQUES)}")
    return items


def _has_weighted_matmul(path: Path) -> bool:
    from optimizers.graph import Graph
    from optimizers.onnx_model import load_model

    g = Graph(load_model(path).proto)
    return any(n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and g.const(n.input[1]) is not None
               for n in g.model.graph.node)


# --- builders: each writes one .onnx file and returns what it did ----------------------------------

def _record(result) -> dict:
    rec = result.record
    return {"changes": rec.changes, "skipped": len(rec.skipped), "notes": rec.notes}


def quantize(source_path: Path, method: str, calibration=None, algorithm: str = "minmax",
             **options) -> Callable[[Path], dict]:
    """A builder running optimizers.Quantizer (options: QuantizeConfig fields, e.g. activation_type)."""

    def build(out: Path) -> dict:
        from optimizers import Quantizer

        result = Quantizer(method, **options).quantize(source_path, calibration_data=calibration,
                                                       algorithm=algorithm, output=out)
        return {**_record(result), **({"options": options} if options else {})}

    return build


def rewrite(source_path: Path, name: str) -> Callable[[Path], dict]:
    """One operator rewrite (optimizers.OperatorOptimizer)."""

    def build(out: Path) -> dict:
        from optimizers import OperatorOptimizer

        result = OperatorOptimizer([name]).optimize(source_path, output=out)
        return {"rewrites": result.record.changes, **_record(result)}

    return build


def fuse(source_path: Path) -> Callable[[Path], dict]:
    """Rewrites then fusion, for ONNX Runtime."""

    def build(out: Path) -> dict:
        from optimizers import OperatorFuser, OperatorOptimizer

        rewritten = OperatorOptimizer().optimize(source_path, output=out.with_suffix(".rewritten.onnx"))
        fused = OperatorFuser(target="onnxruntime").fuse_operations(rewritten.path, output=out)
        rewritten.path.unlink(missing_ok=True)
        return {"rewrites": rewritten.record.changes, **_record(fused)}

    return build


def _torch_builders(source: Source, plan: list[Candidate], techniques: list[str], work: Path,
                    layer_ratios: Callable[[float], dict[str, float]] | None,
                    progress: Callable[[str], None] | None = None) -> None:
    """Candidates made by training: pruning, QAT, distillation, low-rank (each exported to ONNX). Each
    training epoch is reported to `progress` with its loss and accuracy."""
    parts = source.torch
    assert parts is not None

    def epochs(name: str):
        return None if progress is None else (lambda line: progress(f"{name}: {line}"))

    def export(model, out: Path) -> None:
        from optimizers.torch_helpers import export_onnx, export_tflite

        if out.suffix == ".tflite":
            export_tflite(model, out, parts.input_shape)   # litert-torch (the --tflite twins)
        else:
            export_onnx(model, out, parts.input_shape)

    def calib():
        return source.calibration

    if "prune" in techniques:
        variants = [(f"prune-{int(r * 100)}", r, False) for r in PRUNE_RATIOS]
        if layer_ratios is not None:
            variants.append((f"prune-{int(PRUNE_RATIOS[-1] * 100)}-profiled", PRUNE_RATIOS[-1], True))
        for name, ratio, profiled in variants:
            def build_pruned(out: Path, ratio=ratio, profiled=profiled) -> dict:
                import torch

                from optimizers import Pruner
                from optimizers.training import training_threads

                torch.manual_seed(0)
                ratios = layer_ratios(ratio) if profiled and layer_ratios else {}
                pruner = Pruner("structured", fine_tune_epochs=FINE_TUNE_EPOCHS)
                model = pruner.prune(parts.model, pruning_ratio=ratio, layer_ratios=ratios or None)
                with training_threads():
                    pruner.fine_tune(model, parts.train, epochs=FINE_TUNE_EPOCHS, learning_rate=2e-3,
                                     progress=epochs(f"fine-tuning {name}"))
                export(model, out)
                return {"params_before": pruner.report.params_before, "params_after": pruner.report.params_after,
                        "layer_ratios": ratios, "fine_tune_epochs": FINE_TUNE_EPOCHS}

            steps = ["prune", "device-profile ratios", "fine-tune"] if profiled else ["prune", "fine-tune"]
            plan.append(Candidate(name, steps, build_pruned))
            if "int8" in techniques and not profiled:
                pruned_path = work / f"{name}.onnx"
                plan.append(Candidate(f"{name}+int8-minmax", [*steps, "int8"],
                                      _after(pruned_path, quantize(pruned_path, "int8", calib(), "minmax"))))
    if "qat" in techniques:
        def build_qat(out: Path) -> dict:
            import copy

            import torch

            from optimizers import QATTrainer, convert_to_int8
            from optimizers.training import training_threads

            torch.manual_seed(0)
            trainer = QATTrainer(copy.deepcopy(parts.model), "int8")
            with training_threads():
                qat = trainer.train(parts.train, epochs=1, progress=epochs("quantization-aware training"))
            convert_to_int8(qat, calib(), output=out)
            return {"epochs": 1}

        plan.append(Candidate("qat-int8", ["qat", "int8"], build_qat))
    if "distill" in techniques:
        student_path = work / "distill.onnx"

        def build_student(out: Path) -> dict:
            import torch

            from optimizers import KnowledgeDistiller, digits_student
            from optimizers.training import training_threads

            torch.manual_seed(0)
            with training_threads():
                student = KnowledgeDistiller(parts.model, digits_student(), temperature=DISTILL_TEMPERATURE,
                                             alpha=DISTILL_ALPHA).train(parts.train, epochs=DISTILL_EPOCHS,
                                                                        learning_rate=DISTILL_LEARNING_RATE,
                                                                        progress=epochs("distilling the student"))
            export(student, out)
            return {"epochs": DISTILL_EPOCHS, "temperature": DISTILL_TEMPERATURE, "alpha": DISTILL_ALPHA,
                    "learning_rate": DISTILL_LEARNING_RATE}

        plan.append(Candidate("distill", ["distill"], build_student))
        if "int8" in techniques:
            plan.append(Candidate("distill+int8-minmax", ["distill", "int8"],
                                  _after(student_path, quantize(student_path, "int8", calib(), "minmax"))))
    if "low-rank" in techniques:
        def build_low_rank(out: Path) -> dict:
            import torch

            from optimizers import LowRankFactorizer, fine_tune
            from optimizers.training import training_threads

            torch.manual_seed(0)
            factorizer = LowRankFactorizer()
            model = factorizer.factorize(parts.model, rank_ratio=0.5,
                                         inputs=torch.as_tensor(parts.train[0][:64]))
            with training_threads():
                fine_tune(model, parts.train, epochs=FINE_TUNE_EPOCHS, learning_rate=2e-3,
                          progress=epochs("fine-tuning low-rank-50"))
            export(model, out)
            return factorizer.report.to_json()

        plan.append(Candidate("low-rank-50", ["low-rank", "fine-tune"], build_low_rank))


TFLITE_TWINS = ("prune-30", "prune-50", "prune-50-profiled", "distill", "low-rank-50")


def _tflite_twins(source: Source, torch_candidates: list[Candidate]) -> list[Candidate]:
    """The LiteRT versions: the original model and the exported PyTorch candidates, as .tflite files."""
    from optimizers.torch_helpers import export_tflite

    parts = source.torch

    def build_original(out: Path) -> dict:
        export_tflite(parts.model, out, parts.input_shape)
        return {"converter": "litert-torch"}

    twins = [Candidate("tflite", ["tflite"], build_original, suffix=".tflite")]
    for c in torch_candidates:
        if c.name in TFLITE_TWINS:
            twins.append(Candidate(f"{c.name}-tflite", [*c.techniques, "tflite"], c.build, suffix=".tflite"))
    return twins


def _rewrite_candidates(base: Path, calib, with_int8: bool, work: Path, skipped: list[dict]) -> list[Candidate]:
    """`rewrite-NAME` for each of REWRITE_CANDIDATES that changes the model, and `rewrite-NAME+int8-minmax`
    (INT8 of the rewritten file): which form of an activation is fastest, in float and in INT8, is measured
    (a fused op is faster in float, but ONNX Runtime's INT8 keeps only the ops it has kernels for)."""
    from optimizers.rewrites import matching_rewrites

    found = matching_rewrites(base, REWRITE_CANDIDATES)
    if not found:
        skipped.append({"technique": "rewrite", "reason": "none of the rewrites (" + ", ".join(REWRITE_CANDIDATES)
                                                          + ") matches a pattern in this model"})
    out = []
    for name, sites in found.items():
        out.append(Candidate(f"rewrite-{name}", ["rewrite", name], rewrite(base, name)))
        if with_int8:
            path = work / f"rewrite-{name}.onnx"
            out.append(Candidate(f"rewrite-{name}+int8-minmax", ["rewrite", name, "int8", "minmax"],
                                 _after(path, quantize(path, "int8", calib, "minmax"))))
    return out


def _after(dependency: Path, build: Callable[[Path], dict]) -> Callable[[Path], dict]:
    """A builder that needs another candidate's file first (it is built by then: plan order)."""

    def run(out: Path) -> dict:
        if not dependency.exists():
            raise FarmError(f"{dependency.name} was not built, so {out.name} cannot be made from it")
        return build(out)

    return run


def plan(source: Source, techniques: list[str], work: Path,
         layer_ratios: Callable[[float], dict[str, float]] | None = None,
         tflite: bool = False, progress: Callable[[str], None] | None = None) -> tuple[list[Candidate], list[dict]]:
    """Candidates in build order, and the techniques skipped with the reason. With tflite, every PyTorch
    candidate that is exported (not the INT8 ONNX ones) also gets a `-tflite` twin converted by litert-torch,
    and the original model one named `tflite`, measured with the LiteRT backend."""
    base = source.baseline
    calib = source.calibration
    candidates: list[Candidate] = []
    skipped: list[dict] = []
    if "fuse" in techniques:
        candidates.append(Candidate("fused", ["fuse"], fuse(base)))
    if "fp16" in techniques:
        candidates.append(Candidate("fp16", ["fp16"], quantize(base, "fp16")))
    chosen_calibrations = [a for a in CALIBRATIONS if "int8" in techniques or f"int8-{a}" in techniques]
    all_calibrations = "int8" in techniques   # (one calibration picked: only that candidate)
    if chosen_calibrations and "int8" not in techniques:
        techniques = [*techniques, "int8"]  # the combinations (prune + INT8, ...) follow
    for alg in chosen_calibrations:
        candidates.append(Candidate(f"int8-{alg}", ["int8", alg], quantize(base, "int8", calib, alg)))
    if all_calibrations:   # the types and the op set are measured choices, not fixed defaults
        candidates.append(Candidate("int8-minmax-s8s8", ["int8", "minmax", "s8s8"],
                                    quantize(base, "int8", calib, "minmax", activation_type="int8")))
        candidates.append(Candidate("int8-minmax-compute-ops", ["int8", "minmax", "compute ops"],
                                    quantize(base, "int8", calib, "minmax", op_types=COMPUTE_OP_TYPES)))
    if "rewrite" in techniques:
        candidates += _rewrite_candidates(base, calib, "int8" in techniques, work, skipped)
    if "int8-dynamic" in techniques:
        candidates.append(Candidate("int8-dynamic", ["int8-dynamic"], quantize(base, "dynamic")))
    if "int4" in techniques:
        if _has_weighted_matmul(base):
            candidates.append(Candidate("int4-weights", ["int4"], quantize(base, "int4")))
        else:
            skipped.append({"technique": "int4", "reason": "the model has no MatMul/Gemm with constant weights, "
                                                           "which is all INT4 weight-only quantizes"})
    trainable = [t for t in techniques if t in TRAINING]
    if source.torch is not None:
        first = len(candidates)
        _torch_builders(source, candidates, techniques, work, layer_ratios, progress)
        if tflite:
            candidates += _tflite_twins(source, candidates[first:])
    else:
        for t in trainable:
            skipped.append({"technique": t, "reason": "needs the PyTorch model and its training data; an ONNX "
                                                      "file gets the post-training techniques (run without MODEL "
                                                      "for the built-in PyTorch example, or use the Python API)"})
    return candidates, skipped


def write_details(path: Path, candidate: Candidate, details: dict) -> None:
    """The build record beside the candidate's .onnx (its presence marks the build as complete)."""
    path.with_suffix(".json").write_text(json.dumps({"name": candidate.name, "techniques": candidate.techniques,
                                                     "details": details}, indent=1, default=str))


def read_details(path: Path) -> dict | None:
    """The build record if the candidate was completely built by an earlier run."""
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        try:
            return json.loads(meta.read_text()).get("details", {})
        except json.JSONDecodeError:
            return None
    return None
