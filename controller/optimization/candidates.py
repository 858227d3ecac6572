"""The plan of `farmctl optimize`: which candidates to make from which techniques, and how each one is
built (by the optimizers' classes) into a single-file ONNX model. Techniques that cannot apply are
listed with the reason."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import FarmError, UsageError

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
# 1 or 2 training threads, it scores above the teacher (optimizers.data.digits.digits_student)
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
        raise UsageError(f"unknown technique(s) {', '.join(map(repr, unknown))}; --techniques takes a comma "
                        f"separated list of: {', '.join(TECHNIQUES)} (or one calibration: "
                        f"{', '.join(CALIBRATION_CHOICES)})")
    if not items:
        raise UsageError(f"--techniques is empty; choose from: {', '.join(TECHNIQUES)}")
    return items


def has_weighted_matmul(path: Path) -> bool:
    from optimizers.graph.index import Graph
    from optimizers.graph.model import load_model

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


def after(dependency: Path, build: Callable[[Path], dict]) -> Callable[[Path], dict]:
    """A builder that needs another candidate's file first (it is built by then: plan order)."""

    def run(out: Path) -> dict:
        if not dependency.exists():
            raise FarmError(f"{dependency.name} was not built, so {out.name} cannot be made from it")
        return build(out)

    return run


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
