"""What `farmctl optimize` starts from: the baseline ONNX model, its calibration and evaluation data,
and (for the built-in example) the PyTorch model and training data the training-time techniques need."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.errors import FarmError, ModelError
from controller.fleet.client import file_digest
from controller.measure.preflight import check_model, resolve_model

log = logging.getLogger(__name__)

EXAMPLE = "example:digits"        # the built-in PyTorch example (optimize's default)
CALIBRATION_SAMPLES = 128
RECOVERY_SAMPLES = 512            # unlabelled images a pruned ONNX model recovers on, at most
SYNTHETIC_SAMPLES = 16


@dataclass
class TorchParts:
    """A trained PyTorch classifier and its data (the training-time techniques need them)."""

    model: Any
    train: tuple[np.ndarray, np.ndarray]
    input_shape: tuple[int, ...]
    float_accuracy: float | None = None


@dataclass
class Source:
    """The model being optimized, as the loop sees it."""

    name: str
    kind: str                       # "onnx" | "pytorch"
    baseline: Path                  # the ONNX model measured as the baseline
    calibration: Any                # optimizers.data.feeds.Dataset
    evaluation: Any                 # optimizers.data.feeds.Dataset (labels when given)
    identity: str                   # what the optimize key hashes: the model and data digests
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    torch: TorchParts | None = None
    notes: list[str] = field(default_factory=list)
    recovery: Any = None            # unlabelled images other than the evaluation data (recovering a pruned ONNX model)

    @property
    def labelled(self) -> bool:
        """Whether accuracy can be measured (the evaluation data carry labels)."""
        return self.evaluation.labels is not None


def _digest_arrays(*datasets) -> str:
    h = hashlib.sha256()
    for ds in datasets:
        for feed in ds.feeds:
            for k in sorted(feed):
                h.update(k.encode())
                h.update(np.ascontiguousarray(feed[k]).tobytes())
        if ds.labels is not None:
            h.update(np.ascontiguousarray(ds.labels).tobytes())
    return h.hexdigest()[:16]


def example_source(work_dir: Path, progress=None) -> Source:
    """The built-in example: the digits MobileNetV2 (trained on first use, then cached), calibrated on
    training images and evaluated on the fixed validation split (750 labelled digits)."""
    from optimizers.data.digits import DIGITS_INPUT, pretrained_example
    from optimizers.data.feeds import Dataset
    from optimizers.pytorch.helpers import export_onnx

    model, data, test_acc = pretrained_example(progress=progress)
    baseline = work_dir / "baseline.onnx"
    if not baseline.exists():
        export_onnx(model, baseline, DIGITS_INPUT)
    calib = Dataset([{"input": data.train.x[i:i + 1]} for i in range(CALIBRATION_SAMPLES)], None,
                    "digits training split")
    evaluation = Dataset([{"input": data.val.x}], data.val.y, "digits validation split")
    return Source(name="digits-mobilenetv2", kind="pytorch", baseline=baseline, calibration=calib,
                  evaluation=evaluation, identity=f"{EXAMPLE}:{file_digest(baseline)[:16]}",
                  input_shapes={"input": list(DIGITS_INPUT)},
                  torch=TorchParts(model, (data.train.x, data.train.y), DIGITS_INPUT, test_acc),
                  notes=[f"built-in example: {data.source}; float test accuracy {test_acc:.4f}"])


# the image examples' preprocessing: YOLO's input is RGB scaled to [0, 1], no mean/std; PaddleOCR's detector
# takes ImageNet mean/std on x/255
EXAMPLE_PREPROCESS = {"yolov8n": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}, "ppocr-det": {}}
PHOTOS_NOTE = {"yolov8n": "RGB, x/255", "ppocr-det": "RGB, ImageNet mean/std"}


def _photos(write, proto, example: str, input_shapes: dict):
    """The photos `write` puts in a folder, loaded with the example's preprocessing."""
    import tempfile

    from optimizers.data.feeds import ImagePreprocess, load_data

    with tempfile.TemporaryDirectory() as tmp:
        return load_data(str(write(Path(tmp))), proto, input_shapes=input_shapes,
                         preprocess=ImagePreprocess(**EXAMPLE_PREPROCESS[example]))


def _example_name(model_arg: str) -> str:
    return model_arg.removeprefix("example:")


def _default_data(model_arg: str, proto, input_shapes: dict) -> tuple[Any, Any, str]:
    """Real data for the package examples (and, for the image examples, other photos to recover pruned models
    on); synthetic inputs otherwise (and a note saying so)."""
    from optimizers.data.feeds import load_data, synthetic_data

    example = _example_name(model_arg)
    if example == "minilm":
        from controller.measure.examples import minilm_texts, minilm_tokens

        return load_data(minilm_tokens(minilm_texts()), proto), None, "the minilm example's real sentences"
    if example in EXAMPLE_PREPROCESS:
        from controller.measure.examples import recovery_photos, sample_photos

        data = _photos(sample_photos, proto, example, input_shapes)
        recovery = _photos(recovery_photos, proto, example, input_shapes)
        side = "x".join(str(d) for d in data.feeds[0][next(iter(data.feeds[0]))].shape[2:])
        return data, recovery, (f"scikit-image's {len(data.feeds)} sample photos ({PHOTOS_NOTE[example]}, resized "
                                f"and center-cropped to {side}); pruned models recover on {len(recovery.feeds)} "
                                "other photos (scikit-learn's, matplotlib's, scikit-image's others)")
    return (synthetic_data(proto, SYNTHETIC_SAMPLES, input_shapes=input_shapes), None,
            "synthetic random inputs: give --calibration-data and --eval-data (real samples) for numbers "
            "that mean something for your use")


def onnx_source(model_arg: str, calibration_data=None, eval_data=None, preprocess=None,
                input_shapes: dict | None = None) -> Source:
    """An ONNX model with optional data (.npz keyed by input name with optional `labels`, or an image
    folder); without data, real data for the package examples or synthetic inputs (fidelity only)."""
    from optimizers.data.feeds import load_data
    from optimizers.errors import DataMismatch

    path = resolve_model(model_arg)
    ref = check_model(path, input_shapes or {})
    proto = ref.model
    notes = []
    recovery = None
    try:
        if calibration_data is None and eval_data is None:
            ds, recovery, note = _default_data(model_arg, proto, ref.input_shapes)
            calib, evaluation = ds.limit(CALIBRATION_SAMPLES), ds
            notes.append(f"data: {note}")
        else:
            shapes = ref.input_shapes

            def load(what):
                return load_data(str(what), proto, preprocess=preprocess, input_shapes=shapes)
            given = load(calibration_data or eval_data)
            evaluation = load(eval_data) if eval_data else given
            calib = (load(calibration_data) if calibration_data else evaluation).limit(CALIBRATION_SAMPLES)
            if calibration_data is not None and eval_data is not None and str(calibration_data) != str(eval_data):
                recovery = given.limit(RECOVERY_SAMPLES)
    except DataMismatch as exc:
        raise FarmError(f"the data do not fit {path.name}: {exc}") from None
    identity = f"{file_digest(path)[:16]}:{_digest_arrays(calib, evaluation)}"
    return Source(name=path.stem, kind="onnx", baseline=path, calibration=calib, evaluation=evaluation,
                  identity=identity, input_shapes=ref.input_shapes, notes=notes, recovery=recovery)


def optimize_key(source: Source, techniques: list[str], settings: dict) -> str:
    """Identity of an optimize run: the same model, data, plan and measurement settings give the same
    key, so a rerun resumes from the store."""
    blob = json.dumps({"model": source.identity, "techniques": sorted(techniques), "settings": settings},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def check_pytorch_only(model_arg: str | None) -> None:
    """A .pt/.pth file is not accepted as MODEL (its class is unknown to us): say what to do instead."""
    if model_arg and Path(model_arg).suffix in (".pt", ".pth"):
        raise ModelError(f"'{model_arg}' is a PyTorch checkpoint; farmctl optimize takes an ONNX file (the "
                         "post-training techniques) or no MODEL (the built-in PyTorch example). For your own "
                         "PyTorch model use the Python API (optimizers.Pruner, QATTrainer, ...) or export it "
                         "to ONNX with torch.onnx.export(..., dynamo=False)")
