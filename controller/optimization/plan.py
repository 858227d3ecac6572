"""The plan of `farmctl optimize`: which candidates to make from a source, in build order (post-training
ONNX techniques, activation rewrites, the training-time candidates, LiteRT twins), and the techniques
skipped with the reason. The refinements (refine.py) add theirs after the first measurements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.optimization.candidates import (
    CALIBRATIONS,
    REWRITE_CANDIDATES,
    TRAINING,
    Candidate,
    after,
    fuse,
    has_weighted_matmul,
    quantize,
    rewrite,
)
from controller.optimization.onnx_candidates import OnnxTorchBuilders
from controller.optimization.sources import Source
from controller.optimization.torch_candidates import TorchBuilders
from optimizers.onnx_torch.recovery import RecoveryOptions
from optimizers.quantization.quantizer import COMPUTE_OP_TYPES

TFLITE_TWINS = ("prune-30", "prune-50", "prune-50-profiled", "distill", "low-rank-50")


def _tflite_twins(source: Source, torch_candidates: list[Candidate]) -> list[Candidate]:
    """The LiteRT versions: the original model and the exported PyTorch candidates, as .tflite files."""
    from optimizers.pytorch.helpers import export_tflite

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
    from optimizers.graph.rewrites import matching_rewrites

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
                                 after(path, quantize(path, "int8", calib, "minmax"))))
    return out


def plan(source: Source, techniques: list[str], work: Path,
         layer_ratios: Callable[[float], dict[str, float]] | None = None,
         tflite: bool = False, progress: Callable[[str], None] | None = None,
         recovery: RecoveryOptions | None = None) -> tuple[list[Candidate], list[dict]]:
    """Candidates in build order, and the techniques skipped with the reason. With tflite, every PyTorch
    candidate that is exported (not the INT8 ONNX ones) also gets a `-tflite` twin converted by litert-torch,
    and the original model one named `tflite`, measured with the LiteRT backend. An ONNX source's training-time
candidates go through its PyTorch conversion (onnx_candidates.py), recovered with `recovery`."""
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
        if has_weighted_matmul(base):
            candidates.append(Candidate("int4-weights", ["int4"], quantize(base, "int4")))
        else:
            skipped.append({"technique": "int4", "reason": "the model has no MatMul/Gemm with constant weights, "
                                                           "which is all INT4 weight-only quantizes"})
    trainable = [t for t in techniques if t in TRAINING]
    if source.torch is not None:
        trained = TorchBuilders(source, techniques, work, layer_ratios, progress).candidates()
        candidates += trained
        if tflite:
            candidates += _tflite_twins(source, trained)
    elif trainable:
        trained, skips = OnnxTorchBuilders(source, techniques, work, recovery or RecoveryOptions(), progress).plan()
        candidates += trained
        skipped += skips
    return candidates, skipped
