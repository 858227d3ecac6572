"""An ONNX model gets the training-time candidates through its PyTorch conversion: prune-30/prune-50 (+ INT8)
and the pruned student, recovered on the calibration images (never the evaluation ones), exported with the
original names; a model the converter cannot take gets one line and the other techniques go on."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from controller.measure.examples import recovery_photos, sample_photos
from controller.measure.settings import MeasureSettings
from controller.optimization.api import optimize
from controller.optimization.plan import plan
from controller.optimization.sources import onnx_source
from tests.optimizers.onnx_torch.conftest import resnet  # noqa: F401  (the transformers ResNet export)
from tests.optimizers.onnx_torch.test_convert import _with_hardmax

FAST = {"threads": 1, "warmup": 2, "min_iterations": 10, "min_seconds": 0.2}


def test_an_onnx_detector_plans_pruned_candidates_recovered_on_other_photos(tmp_path):
    source = onnx_source("example:yolov8n")
    assert source.recovery is not None and len(source.recovery.feeds) >= 40
    cands, skipped = plan(source, ["prune", "distill", "int8-minmax", "low-rank"], tmp_path)
    names = [c.name for c in cands]
    assert names[:2] == ["int8-minmax", "prune-30"]
    assert {"prune-30+int8-minmax", "prune-50", "prune-50+int8-minmax", "distill-pruned-70"} <= set(names)
    assert [s["technique"] for s in skipped] == ["low-rank"]


def test_a_model_the_converter_cannot_take_is_skipped_with_the_op_named(tmp_path):
    model = _with_hardmax(tmp_path / "hardmax.onnx")
    source = onnx_source(str(model), input_shapes={"x": [1, 3, 8, 8]})
    cands, skipped = plan(source, ["prune", "int8-minmax"], tmp_path)
    assert [c.name for c in cands] == ["int8-minmax"]
    reason = next(s["reason"] for s in skipped if s["technique"] == "prune")
    assert "Hardmax" in reason and "\n" not in reason


@pytest.mark.slow
def test_optimize_prunes_a_transformers_export_and_keeps_its_names(tmp_path, resnet):  # noqa: F811
    calibration = recovery_photos(tmp_path / "calibration")
    evaluation = sample_photos(tmp_path / "evaluation")
    result = optimize(str(resnet), ["local"], techniques="prune,int8-minmax", calibration_data=str(calibration),
                      eval_data=str(evaluation), recovery_minutes=0.05,
                      settings=MeasureSettings(**FAST, input_shapes={"pixel_values": [1, 3, 64, 64]}),
                      out_dir=tmp_path / "out", store=tmp_path / "results.db", confirm_rounds=0,
                      progress=lambda line: None)
    rows = {r.name: r for r in result.devices[0].candidates}
    for name in ("prune-30", "prune-50", "prune-30+int8-minmax", "prune-50+int8-minmax"):
        assert rows[name].status in ("ok", "rejected"), f"{name}: {rows[name].reason}"
    pruned = onnx.load(rows["prune-50"].path)
    assert [i.name for i in pruned.graph.input] == ["pixel_values"]
    assert [o.name for o in pruned.graph.output] == ["logits"]
    details = rows["prune-50"].details
    assert details["recovery"]["epochs"] >= 1 and details["recovery"]["images"] == len(list(calibration.iterdir()))
    assert details["params_after"] < details["params_before"] and details["layers"]
    assert Path(rows["prune-50"].path).stat().st_size < Path(resnet).stat().st_size
