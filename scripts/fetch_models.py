"""Put real models that ship inside PyPI wheels into <venv>/share/edgefarm-models: three .tflite models
from the mediapipe wheel (the LiteRT backend's tests and benchmark) YOLOv8n from the nudenet wheel
(`example:yolov8n`, a real detector) and PaddleOCR's PP-OCRv4 text detector from the rapidocr-onnxruntime
wheel (`example:ppocr-det`, hard-swish as exported by paddle2onnx). pip downloads each wheel from the package index like any
dependency; only the model files are extracted, the packages are not installed (mediapipe's pins conflict
with ours, nudenet and rapidocr pull OpenCV). Run by `make setup`; nothing is fetched at test or run time."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# wheel -> (pip download options, the members to extract)
WHEELS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "mediapipe==0.10.21": (
        ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"],
        ("mediapipe/modules/face_detection/face_detection_short_range.tflite",
         "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
         "mediapipe/modules/palm_detection/palm_detection_lite.tflite")),
    "nudenet==3.4.2": (["--only-binary=:all:"], ("nudenet/320n.onnx",)),
    "rapidocr-onnxruntime==1.4.4": (["--only-binary=:all:"], ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",)),
}


def models_dir() -> Path:
    """Where the models go: inside the active virtual environment."""
    return Path(sys.prefix) / "share" / "edgefarm-models"


def main() -> int:
    out = models_dir()
    out.mkdir(parents=True, exist_ok=True)
    for wheel_spec, (options, members) in WHEELS.items():
        if all((out / Path(m).name).exists() for m in members):
            print(f"models of {wheel_spec} already in {out}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options, wheel_spec,
                            "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as z:
                for member in members:
                    (out / Path(member).name).write_bytes(z.read(member))
        print(f"extracted {len(members)} model(s) from {wheel_spec} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
