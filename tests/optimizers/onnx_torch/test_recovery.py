"""Label-free recovery: a pruned export trained toward the original's outputs on other photos comes closer
to the original on held-out photos than the pruned model without it; pruned exports keep their names and
shapes and run in ONNX Runtime; a rerun takes the result from the cache."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from optimizers import Pruner
from optimizers.data.feeds import ImagePreprocess
from optimizers.onnx_torch.recovery import RecoveryOptions
from tests.optimizers.onnx_torch.conftest import YOLO_SHAPE, image_array, photos_for

SHAPE = [1, 3, 64, 64]
# what recovery must remove, at least, of the pruned model's mean squared output error on held-out photos
MARGIN = 0.3


def _mse(path, reference, images) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = np.concatenate([session.run(None, {name: images[i:i + 1]})[0] for i in range(len(images))])
    return float(((got - reference) ** 2).mean())


def test_recovery_beats_no_recovery_on_held_out_photos(resnet, photos, recovery_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFARM_CACHE", str(tmp_path / "cache"))
    train = photos_for(resnet, recovery_folder, SHAPE, ImagePreprocess())
    held_out = image_array(photos_for(resnet, photos, SHAPE, ImagePreprocess()))
    session = ort.InferenceSession(str(resnet), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {"pixel_values": held_out[i:i + 1]})[0]
                                for i in range(len(held_out))])
    shapes = {"pixel_values": SHAPE}
    raw = Pruner().prune_onnx(resnet, tmp_path / "raw.onnx", 0.5, input_shapes=shapes)
    lines = []
    recovered = Pruner().prune_onnx(resnet, tmp_path / "recovered.onnx", 0.5, input_shapes=shapes,
                                    recovery_data=train, recovery=RecoveryOptions(minutes=1, max_epochs=6),
                                    progress=lines.append)
    assert raw.recovery is None and "not recovered" in raw.notes[-1]
    assert recovered.recovery.epochs == 6 and len(lines) == 6 and lines[0].startswith("epoch 1: loss")
    before, after = _mse(raw.path, reference, held_out), _mse(recovered.path, reference, held_out)
    assert after <= (1 - MARGIN) * before, f"recovery took the error from {before:.4g} to {after:.4g}"
    again = Pruner().prune_onnx(resnet, tmp_path / "again.onnx", 0.5, input_shapes=shapes, recovery_data=train,
                                recovery=RecoveryOptions(minutes=1, max_epochs=6))
    assert again.cached and again.path.read_bytes() == recovered.path.read_bytes()


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_pruned_yolov8n_keeps_names_and_shapes_and_runs(ratio, yolov8n, yolo_photos, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFARM_CACHE", str(tmp_path / "cache"))
    result = Pruner().prune_onnx(yolov8n, tmp_path / "pruned.onnx", ratio, input_shapes={"images": YOLO_SHAPE},
                                 check_data=yolo_photos)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("images", YOLO_SHAPE)]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("output0", [1, 22, 2100])]
    out = session.run(None, yolo_photos.feeds[0])[0]
    assert out.shape == (1, 22, 2100) and np.isfinite(out).all()
    assert result.params_after < (1 - ratio + 0.15) * result.params_before
    assert all(after % 8 == 0 for _, after in result.layers.values())   # channel counts rounded to 8
    heads = [n for n, why in result.kept_whole.items() if why.startswith("an output layer")]
    assert len(heads) == 7 and not any(n in result.layers for n in heads)
    narrow = [n for n, why in result.kept_whole.items() if "channels: rounded to 8" in why]
    assert narrow and not any(n in result.layers for n in narrow)


def test_prune_takes_an_onnx_path(yolov8n, tmp_path, monkeypatch):
    """Pruner().prune("model.onnx") prunes the file beside itself; a dynamic input asks for its shape."""
    from controller.measure.examples import copy_yolov8n
    from optimizers.errors import DataMismatch

    monkeypatch.setenv("EDGEFARM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataMismatch, match="input_shapes"):
        Pruner().prune(str(yolov8n), 0.3)
    fixed = tmp_path / "yolov8n.onnx"
    copy_yolov8n(fixed)   # the same model with its input fixed to 1x3x320x320
    result = Pruner().prune(fixed, 0.3)
    assert result.path == tmp_path / "yolov8n-pruned-30.onnx" and result.path.exists()
    assert result.params_after < result.params_before
