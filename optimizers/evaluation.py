"""Judging a model: top-1 accuracy when labels are given, and fidelity against the original model's
outputs (cosine similarity, top-1 agreement for classifiers, SQNR in dB) when they are not."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from optimizers.data import Dataset, as_dataset
from optimizers.errors import ModelError


@dataclass
class Fidelity:
    """How close a candidate's outputs are to the reference's, over all outputs and samples."""

    cosine: float           # mean over samples of the cosine similarity of the flattened outputs
    sqnr_db: float          # 10*log10(signal power / error power) over all outputs
    top1_agreement: float | None  # share of samples whose argmax agrees (first output, when it is [N, C])
    max_abs_error: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    """Accuracy (None without labels) and fidelity (None without a reference)."""

    accuracy: float | None
    fidelity: Fidelity | None
    samples: int

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "samples": self.samples,
                "fidelity": self.fidelity.to_json() if self.fidelity else None}


def session(model, threads: int = 1):
    """An in-process ONNX Runtime CPU session (ORT_ENABLE_ALL, as the agent runs it; explicit threads)."""
    import onnxruntime as ort

    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    try:
        return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own exception types
        raise ModelError(f"onnxruntime cannot load the model: {str(exc).strip()[:300]}") from None


def run_outputs(model, data: Dataset, threads: int = 1) -> list[list[np.ndarray]]:
    """Outputs of every feed dict, as [sample][output] arrays."""
    sess = session(model, threads)
    try:
        return [sess.run(None, feed) for feed in data.feeds]
    except Exception as exc:
        raise ModelError(f"onnxruntime failed to run the model: {str(exc).strip()[:300]}") from None


def compare_outputs(reference: list[list[np.ndarray]], candidate: list[list[np.ndarray]]) -> Fidelity:
    """Fidelity of candidate outputs against reference outputs (same samples, same output order)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference samples vs {len(candidate)} candidate samples")
    cosines, signal, noise, max_err = [], 0.0, 0.0, 0.0
    agree = total = 0
    classifier = True
    for ref_outs, cand_outs in zip(reference, candidate):
        if len(ref_outs) != len(cand_outs):
            raise ValueError(f"the candidate has {len(cand_outs)} outputs, the reference {len(ref_outs)}")
        r = np.concatenate([np.asarray(o, np.float64).ravel() for o in ref_outs])
        c = np.concatenate([np.asarray(o, np.float64).ravel() for o in cand_outs])
        denom = np.linalg.norm(r) * np.linalg.norm(c)
        cosines.append(float(r @ c / denom) if denom > 0 else float(np.allclose(r, c)))
        signal += float(r @ r)
        noise += float((r - c) @ (r - c))
        max_err = max(max_err, float(np.max(np.abs(r - c))) if r.size else 0.0)
        first_ref, first_cand = np.asarray(ref_outs[0]), np.asarray(cand_outs[0])
        if first_ref.ndim == 2 and first_ref.shape[1] > 1:
            agree += int(np.sum(first_ref.argmax(1) == first_cand.argmax(1)))
            total += first_ref.shape[0]
        else:
            classifier = False
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return Fidelity(cosine=float(np.mean(cosines)), sqnr_db=round(sqnr, 3) if math.isfinite(sqnr) else sqnr,
                    top1_agreement=(agree / total) if classifier and total else None,
                    max_abs_error=max_err)


def accuracy(outputs: list[list[np.ndarray]], labels: np.ndarray) -> float:
    """Top-1 accuracy of the first output (argmax over its last axis) against integer labels."""
    preds = np.concatenate([np.asarray(o[0]).reshape(np.asarray(o[0]).shape[0], -1).argmax(1) for o in outputs])
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions vs {len(labels)} labels")
    return float(np.mean(preds == np.asarray(labels).astype(preds.dtype)))


def evaluate(model: str | Path, data, labels: np.ndarray | None = None, reference: str | Path | None = None,
             threads: int = 1, reference_outputs: list[list[np.ndarray]] | None = None) -> Evaluation:
    """Accuracy with labels; fidelity against `reference` (the original model) or its precomputed outputs."""
    from optimizers.onnx_model import load_model

    loaded = load_model(model)
    ds = as_dataset(data, loaded.proto, labels=labels)
    outs = run_outputs(loaded.proto, ds, threads)
    acc = accuracy(outs, ds.labels) if ds.labels is not None else None
    fid = None
    if reference_outputs is None and reference is not None:
        reference_outputs = run_outputs(load_model(reference).proto, ds, threads)
    if reference_outputs is not None:
        fid = compare_outputs(reference_outputs, outs)
    return Evaluation(accuracy=acc, fidelity=fid, samples=sum(next(iter(f.values())).shape[0] for f in ds.feeds))
