"""How optimize judges quality: a fidelity that survives all-zero outputs, and task metrics (--metric
built-ins and the user's own function) from the CLI and from Python, with clear errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.cli.main import main
from controller.measure.settings import MeasureSettings
from controller.optimization.api import Constraints, optimize
from controller.optimization.quality import judge
from tests import models

FAST = ["--threads", "1", "--warmup", "2", "--min-iterations", "20", "--min-seconds", "0.3"]
SETTINGS = MeasureSettings(threads=1, warmup=2, min_iterations=20, min_seconds=0.3)


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> tuple[Path, Path]:
    """A dense probability-map model and evaluation data half of which show nothing (all-zero maps)."""
    tmp = tmp_path_factory.mktemp("detector")
    model = models.probability_map_model(tmp / "detector.onnx")
    np.savez(tmp / "eval.npz", x=models.blob_images(24))
    return model, tmp / "eval.npz"


def _cli(tmp_path: Path, model: Path, data: Path, *extra: str) -> list[str]:
    return ["--store", str(tmp_path / "r.db"), "optimize", str(model), "--eval-data", str(data),
            "--out", str(tmp_path / "out"), "--json", *FAST, *extra]


def test_identical_outputs_score_exactly_one_where_reference_outputs_are_all_zero():
    maps = np.zeros((6, 1, 8, 8), np.float32)
    maps[1::2, 0, 2:5, 2:5] = 0.9
    q = judge({"map": maps}, {"map": maps.copy()}, None)
    assert q.fidelity == 1.0 and q.fidelity_detail["zero_norm_samples"] == 3
    noisy = maps.copy()
    noisy[1, 0, 2, 2] = 0.5   # one pixel of one detected blob off
    assert 0.99 < judge({"map": noisy}, {"map": maps}, None).fidelity < 1.0


def test_mask_iou_from_the_cli_on_a_detector_with_empty_images(tmp_path, detector, capsys):
    model, data = detector
    code = main(_cli(tmp_path, model, data, "--techniques", "fp16,int8-minmax", "--metric", "mask-iou@0.5",
                     "--min-metric", "0.9"))
    doc = json.loads(capsys.readouterr().out)
    assert code in (0, 3)
    assert doc["metric"] == "mask-iou@0.5" and doc["baseline"]["metric_value"] == 1.0
    fp16 = next(c for c in doc["candidates"] if c["name"] == "fp16")
    # half the reference maps are all zeros: per-sample cosine would have scored this copy ~0.5
    assert fp16["fidelity"] > 0.999 and fp16["metric_value"] > 0.95
    for c in doc["candidates"]:
        assert c["meets_constraints"] is False or c["metric_value"] >= 0.9
        if c["metric_value"] is not None and c["metric_value"] < 0.9:
            assert "metric" in c["reason"] and "< --min-metric 0.9" in c["reason"]
    assert "metric: mask-iou@0.5" in (tmp_path / "out" / "report.md").read_text()


def test_a_user_metric_file_from_the_cli(tmp_path, detector, capsys):
    model, data = detector
    (tmp_path / "my_metric.py").write_text(
        "import numpy as np\n"
        "def neg_mae(reference, candidate, labels):\n"
        "    return -float(np.mean(np.abs(reference['map'] - candidate['map'])))\n")
    code = main(_cli(tmp_path, model, data, "--techniques", "fp16", "--metric",
                     f"{tmp_path / 'my_metric.py'}:neg_mae", "--max-metric-drop", "0.05"))
    doc = json.loads(capsys.readouterr().out)
    assert code in (0, 3) and doc["metric"].endswith("my_metric.py:neg_mae")
    assert doc["baseline"]["metric_value"] == 0.0
    assert -0.05 < doc["candidates"][0]["metric_value"] <= 0.0


@pytest.mark.slow   # optimize runs
def test_metrics_from_python(tmp_path, detector):
    model, data = detector
    calls = []

    def peak_agreement(reference, candidate, labels):
        calls.append(labels)
        return float(np.mean(reference["map"].max(axis=(1, 2, 3)) == candidate["map"].max(axis=(1, 2, 3))))

    result = optimize(str(model), eval_data=str(data), techniques="fp16", metric=peak_agreement,
                      constraints=Constraints(min_metric=0.5), out_dir=tmp_path / "out", store=tmp_path / "r.db",
                      settings=SETTINGS, confirm_rounds=0, progress=lambda line: None)
    doc = result.to_json()
    assert doc["metric"] == "test_metrics_from_python.<locals>.peak_agreement"
    assert doc["baseline"]["metric_value"] == 1.0 and calls and all(c is None for c in calls)  # no labels
    top1 = optimize("example:mobilenetv2", techniques="fp16", metric="top1", out_dir=tmp_path / "out2",
                    store=tmp_path / "r.db", settings=SETTINGS, confirm_rounds=0, progress=lambda line: None)
    assert top1.to_json()["metric"] == "top1" and top1.constraints.max_metric_drop == 0.01
    assert top1.to_json()["candidates"][0]["metric_value"] > 0.9   # fp16 agrees with FP32's top-1


@pytest.mark.parametrize("flags, message", [
    (["--metric", "top5"], "unknown metric 'top5'; use one of top1, mask-iou@T"),
    (["--metric", "mask-iou@2"], "metric 'mask-iou@2' has threshold '2', which is not a number in (0, 1)"),
    (["--metric", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["--min-metric", "0.9"], "--min-metric and --max-metric-drop limit a task metric: name it with --metric"),
])
def test_a_bad_metric_is_one_clear_sentence_before_any_work(tmp_path, detector, capsys, flags, message):
    model, data = detector
    assert main(_cli(tmp_path, model, data, "--techniques", "fp16", *flags)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "candidates").exists() or not any((tmp_path / "out" / "candidates").iterdir())
