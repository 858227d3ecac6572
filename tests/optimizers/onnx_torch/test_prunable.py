"""Each rewrite that makes a converted export prunable is exact on the real export, and the output layers
(detection heads, box decoding) are found and kept."""

from __future__ import annotations

import pytest

from optimizers.onnx_torch.convert import MAX_RELATIVE_ERROR, convert_onnx, output_error
from optimizers.onnx_torch.prunable import REWRITES, head_layers, make_prunable
from tests.optimizers.onnx_torch.conftest import YOLO_SHAPE

# on nudenet's YOLOv8n: 57 SiLUs written as x * sigmoid(x), 8 C2f blocks (Conv -> Split), 2 Reshapes with the
# batch fixed at 1 (the DFL's)
YOLO_SITES = {"silu": 57, "split-conv": 8, "batch-reshape": 2}


@pytest.fixture(scope="module")
def yolo_converted(yolov8n, yolo_photos):
    return yolov8n, yolo_photos


@pytest.mark.parametrize("name", list(REWRITES))
def test_each_rewrite_is_exact_on_yolov8n(name, yolo_converted):
    path, photos = yolo_converted
    converted = convert_onnx(path, {"images": YOLO_SHAPE}, photos.feeds[:2])
    if name == "split-conv":   # its pattern is Conv -> activation -> Split: the SiLU rewrite first
        REWRITES["silu"].apply(converted.module)
    sites = REWRITES[name].apply(converted.module)
    converted.module.recompile()
    assert sites == YOLO_SITES[name]
    for feed in photos.feeds[:3]:
        assert output_error(converted, feed) <= MAX_RELATIVE_ERROR


def test_yolov8n_heads_and_dfl_are_kept_whole(yolov8n, yolo_photos):
    converted = convert_onnx(yolov8n, {"images": YOLO_SHAPE}, yolo_photos.feeds[:2])
    prepared = make_prunable(converted.module)
    assert prepared.sites == YOLO_SITES
    heads = sorted(prepared.heads)
    assert len(heads) == 7 and any("dfl" in h for h in heads)   # 3 box + 3 class convs, the DFL conv
    assert all("/22/" in h for h in heads)                      # all in the Detect module (model.22)
    assert not [n for n in converted.module.graph.nodes if "Split" in str(n.target) and "/22/" not in str(n.target)]


def test_resnet_head_is_its_classifier(resnet):
    converted = convert_onnx(resnet, {"pixel_values": [1, 3, 64, 64]})
    heads = head_layers(converted.module)
    assert len(heads) == 1 and "classifier" in heads[0].lower()
