"""Judging a model: top-1 accuracy when labels are given, and fidelity against the original model's
outputs (cosine similarity per output over all samples, top-1 agreement for classifiers, SQNR in dB).
Task metrics beyond these (mask IoU, the user's own) live in optimizers.evaluation.metrics."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from optimizers.data.feeds import Dataset, as_dataset
from optimizers.errors import DataMismatch, ModelError


@dataclass
class Fidelity:
    """How close a candidate's outputs are to the reference's. The headline `cosine` is taken per output
    over all samples at once (so all-zero samples cannot drag it down) and is the worst output's."""

    cosine: float                 # min over outputs of the cosine of that output flattened over all samples
    sqnr_db: float                # 10*log10(signal power / error power) over all outputs and samples
    top1_agreement: float | None  # share of rows whose argmax agrees (first output, when it is [N, C])
    max_abs_error: float
    per_output_cosine: list[float] = field(default_factory=list)  # by output index
    sample_cosine_mean: float | None = None  # mean per-sample cosine, samples with a nonzero reference only
    zero_norm_samples: int = 0    # samples whose reference outputs are all zero (counted, not averaged)

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
    batch_one = {i.name for i in sess.get_inputs() if i.shape and i.shape[0] == 1}
    try:
        return [_run_feed(sess, feed, batch_one) for feed in data.feeds]
    except Exception as exc:
        raise ModelError(f"onnxruntime failed to run the model: {str(exc).strip()[:300]}") from None


def _run_feed(sess, feed: dict[str, np.ndarray], batch_one: set[str]) -> list[np.ndarray]:
    """One feed dict; rows of a stacked feed run one by one where the model fixes its batch to 1 (the
    PyTorch example's 750 validation digits are one feed of [750, 1, 28, 28])."""
    rows = {len(v) for k, v in feed.items() if k in batch_one and np.ndim(v)}
    if not rows or rows == {1}:
        return sess.run(None, feed)
    parts = [sess.run(None, {k: v[j:j + 1] for k, v in feed.items()}) for j in range(max(rows))]
    return [np.concatenate([part[o] for part in parts]) for o in range(len(parts[0]))]


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine of two flat vectors in [-1, 1]: exactly 1.0 when they are equal (all zeros included),
    0.0 when only one of them is all zeros."""
    if np.array_equal(reference, candidate, equal_nan=True):
        return 1.0
    r_max, c_max = float(np.max(np.abs(reference))), float(np.max(np.abs(candidate)))
    if r_max == 0 or c_max == 0:
        return 0.0
    r, c = reference / r_max, candidate / c_max  # scaled so that huge values cannot overflow the dot product
    return float(np.clip(r @ c / (np.linalg.norm(r) * np.linalg.norm(c)), -1.0, 1.0))


def compare_outputs(reference: list[list[np.ndarray]], candidate: list[list[np.ndarray]]) -> Fidelity:
    """Fidelity of candidate outputs against reference outputs ([sample][output] arrays, same samples,
    same output order)."""
    if len(reference) != len(candidate):
        raise DataMismatch(f"{len(reference)} reference samples vs {len(candidate)} candidate samples; "
                           "compare outputs of the same inputs")
    if not reference:
        raise DataMismatch("there are no samples to compare; give at least one evaluation sample")
    n_outputs = len(reference[0])
    if n_outputs == 0:
        raise DataMismatch("the models have no outputs to compare")
    per_sample, signal, noise, max_err = [], 0.0, 0.0, 0.0
    zero_samples = agree = total = 0
    classifier = True
    for i, (ref_outs, cand_outs) in enumerate(zip(reference, candidate)):
        if len(ref_outs) != n_outputs or len(cand_outs) != n_outputs:
            raise DataMismatch(f"sample {i} has {len(cand_outs)} candidate and {len(ref_outs)} reference outputs, "
                               f"sample 0 {n_outputs}; give every sample the same outputs")
        for k, (r_out, c_out) in enumerate(zip(ref_outs, cand_outs)):
            if np.size(r_out) != np.size(c_out):  # shapes may differ ([1, 10] vs [10]); values are flattened
                raise DataMismatch(f"output {k} of sample {i} has shape {np.shape(c_out)} in the candidate and "
                                   f"{np.shape(r_out)} in the reference; compare models with the same outputs")
        r, c = _flat(ref_outs), _flat(cand_outs)
        if r.size and np.any(r):
            per_sample.append(cosine(r, c))
        else:
            zero_samples += 1
        signal += float(r @ r)
        noise += float((r - c) @ (r - c))
        max_err = max(max_err, float(np.max(np.abs(r - c))) if r.size else 0.0)
        first_ref, first_cand = np.asarray(ref_outs[0]), np.asarray(cand_outs[0])
        if first_ref.ndim == 2 and first_ref.shape[1] > 1:
            agree += int(np.sum(first_ref.argmax(1) == first_cand.argmax(1)))
            total += first_ref.shape[0]
        else:
            classifier = False
    per_output = [cosine(_flat([s[k] for s in reference]), _flat([s[k] for s in candidate]))
                  for k in range(n_outputs)]
    headline = math.nan if any(math.isnan(v) for v in per_output) else min(per_output)
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return Fidelity(cosine=headline, sqnr_db=round(sqnr, 3) if math.isfinite(sqnr) else sqnr,
                    top1_agreement=(agree / total) if classifier and total else None,
                    max_abs_error=max_err, per_output_cosine=per_output,
                    sample_cosine_mean=float(np.mean(per_sample)) if per_sample else None,
                    zero_norm_samples=zero_samples)


def accuracy(outputs: list[list[np.ndarray]], labels: np.ndarray) -> float:
    """Top-1 accuracy of the first output (argmax over its last axis) against integer labels."""
    preds = np.concatenate([np.asarray(o[0]).reshape(np.asarray(o[0]).shape[0], -1).argmax(1) for o in outputs])
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions vs {len(labels)} labels")
    return float(np.mean(preds == np.asarray(labels).astype(preds.dtype)))


def evaluate(model: str | Path, data, labels: np.ndarray | None = None, reference: str | Path | None = None,
             threads: int = 1, reference_outputs: list[list[np.ndarray]] | None = None,
             input_shapes: dict[str, list[int]] | None = None) -> Evaluation:
    """Accuracy with labels; fidelity against `reference` (the original model) or its precomputed outputs.
    `input_shapes` fix dynamic dimensions for the data (images are resized to them)."""
    from optimizers.graph.model import load_model

    loaded = load_model(model, data=data)
    ds = as_dataset(data, loaded.proto, labels=labels, input_shapes=input_shapes)
    outs = run_outputs(loaded.proto, ds, threads)
    acc = accuracy(outs, ds.labels) if ds.labels is not None else None
    fid = None
    if reference_outputs is None and reference is not None:
        reference_outputs = run_outputs(load_model(reference, data=data).proto, ds, threads)
    if reference_outputs is not None:
        fid = compare_outputs(reference_outputs, outs)
    return Evaluation(accuracy=acc, fidelity=fid, samples=sum(next(iter(f.values())).shape[0] for f in ds.feeds))
