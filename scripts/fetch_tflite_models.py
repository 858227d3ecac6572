"""Put real .tflite models for the LiteRT backend's tests and benchmark into <venv>/share/edgefarm-models:
they ship inside the mediapipe wheel (mediapipe/modules/...), which pip downloads from the package index
like any dependency; only the model files are extracted, mediapipe itself is not installed (its pins
conflict with ours). Run by `make setup`; nothing is fetched at test time."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "mediapipe==0.10.21"
MODELS = ("mediapipe/modules/face_detection/face_detection_short_range.tflite",
          "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
          "mediapipe/modules/palm_detection/palm_detection_lite.tflite")


def models_dir() -> Path:
    """Where the models go: inside the active virtual environment."""
    return Path(sys.prefix) / "share" / "edgefarm-models"


def main() -> int:
    out = models_dir()
    if all((out / Path(m).name).exists() for m in MODELS):
        print(f"tflite models already in {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", WHEEL, "-d", tmp],
                       check=True)
        wheel = next(Path(tmp).glob("mediapipe-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for member in MODELS:
                (out / Path(member).name).write_bytes(z.read(member))
    print(f"extracted {len(MODELS)} .tflite models from {WHEEL} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
