"""Real exports as they ship (dynamic dims kept): nudenet's YOLOv8n, PaddleOCR's PP-OCRv4 detector, and a
ResNet from `transformers` exported with a dynamic batch; real photos to check and recover them on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from controller.measure import examples
from optimizers.data.feeds import ImagePreprocess, load_data
from tests.optimizers import vision_zoo

YOLO_SHAPE = [1, 3, 320, 320]


def _packaged(file: str, wheel: str) -> Path:
    path = examples.packaged_models_dir() / file
    if not path.exists():
        pytest.fail(f"{path} is missing: make setup takes it out of the {wheel} wheel")
    return path


@pytest.fixture(scope="session")
def yolov8n() -> Path:
    return _packaged("320n.onnx", "nudenet")


@pytest.fixture(scope="session")
def ppocr() -> Path:
    return _packaged("ch_PP-OCRv4_det_infer.onnx", "rapidocr-onnxruntime")


@pytest.fixture(scope="session")
def resnet(model_dir) -> Path:
    """transformers' ResNet (random weights, small config), exported with a dynamic batch and named input."""
    import torch

    path = model_dir / "hf-resnet.onnx"
    if not path.exists():
        torch.manual_seed(0)
        model = vision_zoo.build("ResNet").eval()

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixel_values):
                return self.model(pixel_values=pixel_values).logits

        torch.onnx.export(Logits(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["pixel_values"],
                          output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    return path


def photos_for(model: Path, folder: Path, shape: list[int], preprocess: ImagePreprocess):
    name = onnx.load(str(model)).graph.input[0].name
    return load_data(str(folder), onnx.load(str(model)), preprocess=preprocess, input_shapes={name: shape})


@pytest.fixture(scope="session")
def yolo_photos(yolov8n, photos):
    return photos_for(yolov8n, photos, YOLO_SHAPE, ImagePreprocess(mean=(0, 0, 0), std=(1, 1, 1)))


@pytest.fixture(scope="session")
def recovery_folder(model_dir) -> Path:
    return examples.recovery_photos(model_dir / "recovery-photos")


def image_array(dataset) -> np.ndarray:
    return np.concatenate([next(iter(f.values())) for f in dataset.feeds])
