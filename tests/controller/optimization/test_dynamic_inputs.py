"""Models as they ship have dynamic input dimensions: every technique optimize plans runs end to end on
them, each candidate timed paired with the baseline (whose reference run gets the same --input-shape),
and the other commands take the same shapes: a symbolic batch and image size, a transformers export with
two dynamic inputs, and PP-OCRv4's detector exactly as the rapidocr-onnxruntime wheel ships it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from controller.measure.examples import packaged_models_dir, sample_photos
from controller.measure.settings import MeasureSettings
from controller.optimization.api import optimize
from tests import models

pytestmark = pytest.mark.slow   # whole optimize runs

FAST = {"threads": 1, "warmup": 2, "min_iterations": 10, "min_seconds": 0.2}


def _dynamic_dims(path: Path) -> list[str]:
    return [d.dim_param for i in onnx.load(str(path)).graph.input for d in i.type.tensor_type.shape.dim
            if d.dim_param]


def _check_rows(rows) -> None:
    """No row failed, and every measured row was timed paired with the baseline."""
    for row in rows:
        assert row.status in ("ok", "rejected"), f"{row.name}: {row.status}: {row.reason}"
        assert row.speedup_ci, f"{row.name} was not timed paired with the baseline"


def test_every_planned_technique_on_a_symbolic_batch_and_image_size(tmp_path):
    model = models.conv_model(tmp_path / "dynamic.onnx", batch="batch", size="side")
    assert _dynamic_dims(model) == ["batch", "side", "side"]
    result = optimize(str(model), ["local"], techniques="fuse,fp16,int8,int8-measured,rewrite,int8-dynamic,"
                                                        "mixed-precision",
                      settings=MeasureSettings(**FAST, input_shapes={"x": [2, 3, 24, 24]}),
                      out_dir=tmp_path / "out", store=tmp_path / "results.db", confirm_rounds=1,
                      progress=lambda line: None)
    dev = result.devices[0]
    names = {r.name for r in dev.candidates}
    assert {"fused", "fp16", "int8-minmax", "int8-kl", "int8-percentile", "int8-dynamic"} <= names
    _check_rows(dev.candidates)
    assert not [s for s in result.skipped if "dynamic" in s["reason"]], result.skipped


def test_a_transformers_export_with_two_dynamic_inputs(tmp_path):
    pytest.importorskip("transformers")
    model = models.tiny_bert(tmp_path / "bert.onnx")
    assert _dynamic_dims(model) == ["batch", "sequence", "batch", "sequence"]
    shapes = {"input_ids": [1, 16], "attention_mask": [1, 16]}
    result = optimize(str(model), ["local"], techniques="fuse,fp16,int8-minmax,int8-dynamic,int4,rewrite",
                      settings=MeasureSettings(**FAST, input_shapes=shapes), out_dir=tmp_path / "out",
                      store=tmp_path / "results.db", confirm_rounds=0, progress=lambda line: None)
    dev = result.devices[0]
    assert {"fused", "fp16", "int8-minmax", "int8-dynamic", "int4-weights"} <= {r.name for r in dev.candidates}
    _check_rows(dev.candidates)


def _farmctl(cwd: Path, *args: str, store: str = "results.db") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", "--store", str(cwd / store), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "EDGEFARM_CACHE": str(cwd / "cache")})


def test_ppocr_detector_as_the_wheel_ships_it(tmp_path):
    src = packaged_models_dir() / "ch_PP-OCRv4_det_infer.onnx"
    if not src.exists():
        pytest.skip(f"{src} is taken out of the rapidocr-onnxruntime wheel by `make setup`")
    det = tmp_path / "det.onnx"
    shutil.copyfile(src, det)
    assert len(_dynamic_dims(det)) == 3   # p2o.DynamicDimension.0/.1/.2: batch, height, width
    photos = sample_photos(tmp_path / "photos")
    shape = ["--input-shape", "x=1,3,96,96"]
    fast = ["--threads", "1", "--warmup", "2", "--min-iterations", "10", "--min-seconds", "0.2"]
    out = _farmctl(tmp_path, "optimize", "det.onnx", *shape, *fast, "--techniques", "fuse,fp16,int8-minmax,rewrite",
                   "--calibration-data", str(photos), "--eval-data", str(photos), "--confirm-rounds", "1",
                   "--json", "--out", "opt")
    assert out.returncode in (0, 3), out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert {"fused", "fp16", "int8-minmax"} <= {c["name"] for c in doc["candidates"]}
    for c in doc["candidates"]:
        assert c["status"] in ("ok", "rejected") and c["speedup_ci"], c
    for args in (["bench", "det.onnx", *shape, *fast], ["profile", "det.onnx", *shape, "--threads", "1"],
                 ["evaluate", "det.onnx", "--eval-data", str(photos), "--reference", "det.onnx", *shape],
                 ["quantize", "det.onnx", "--calibration-data", str(photos), *shape, "-o", "q.onnx"]):
        run = _farmctl(tmp_path, *args, store="tools.db")
        assert run.returncode == 0, (args, run.stderr[-2000:])
    compare = _farmctl(tmp_path, "compare", "1", "2", store="tools.db")   # the bench and the profile run above
    assert compare.returncode == 0, compare.stderr[-2000:]


def test_image_data_without_the_shape_says_which_flag(tmp_path):
    src = packaged_models_dir() / "ch_PP-OCRv4_det_infer.onnx"
    if not src.exists():
        pytest.skip(f"{src} is taken out of the rapidocr-onnxruntime wheel by `make setup`")
    shutil.copyfile(src, tmp_path / "det.onnx")
    photos = sample_photos(tmp_path / "photos")
    run = _farmctl(tmp_path, "evaluate", "det.onnx", "--eval-data", str(photos))
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "fix them with --input-shape x=N,3,N,N" in run.stderr
