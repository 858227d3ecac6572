"""The Python API (controller.measure.api) against real agents, and the built-in examples."""

from __future__ import annotations

import pytest

from controller.errors import JobFailed, ModelError
from controller.measure.api import bench, profile
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from optimizers.graph.flops import graph_flops
from tests import models

FAST = MeasureSettings(threads=1, warmup=1, min_iterations=5, min_seconds=0.0, profile_iterations=5)


def test_bench_and_profile_from_python(start_agent, conv_onnx, tmp_path):
    client, _ = start_agent()
    store = ResultsStore(tmp_path / "r.db")
    b = bench(conv_onnx, device=client, settings=FAST, store=store)
    assert b.device == "test-agent" and b.iterations >= 5 and b.latency_ms["p50"] > 0
    assert b.upload_bytes == conv_onnx.stat().st_size
    p = profile(conv_onnx, device=client, settings=FAST, store=store)
    assert p.layers and p.total_flops > 0 and p.run_id == b.run_id + 1
    assert [r["kind"] for r in store.runs()] == ["profile", "benchmark"]


def test_failed_job_raises_and_is_stored(start_agent, model_dir, tmp_path):
    client, _ = start_agent()
    store = ResultsStore(tmp_path / "r.db")
    with pytest.raises(JobFailed) as info:
        bench(models.unknown_op_model(model_dir / "unknown.onnx"), device=client, settings=FAST, store=store)
    assert info.value.code == "UNSUPPORTED_OP"
    assert store.runs(status="failed")[0]["error_code"] == "UNSUPPORTED_OP"


def test_builtin_example_is_a_mobilenetv2(tmp_path):
    from controller.measure.examples import example_model
    from controller.measure.preflight import check_model

    path = example_model()
    ref = check_model(path)
    assert ref.input_shapes == {"input": [1, 3, 224, 224]}
    total = graph_flops(path, ref.input_shapes).total
    assert 0.55e9 < total < 0.7e9  # MobileNetV2 1.0 at 224: ~300M multiply-adds
    with pytest.raises(ModelError, match="built-in examples are: mobilenetv2"):
        from controller.measure.preflight import resolve_model
        resolve_model("example:resnet9000")


def test_yolov8n_example_is_the_real_detector_with_a_fixed_input():
    """example:yolov8n: YOLOv8n as shipped in the nudenet wheel (unpacked by `make setup`), its dynamic input
    fixed to 1x3x320x320; its default data are scikit-image's sample photos."""
    import onnxruntime as ort

    from controller.measure.preflight import check_model, resolve_model
    from controller.optimization.sources import onnx_source

    ref = check_model(resolve_model("example:yolov8n"), {})
    assert ref.input_shapes == {"images": [1, 3, 320, 320]}
    assert sum(1 for n in ref.model.graph.node if n.op_type == "Conv") == 64
    source = onnx_source("example:yolov8n")
    assert len(source.evaluation.feeds) == 16 and "sample photos" in source.notes[0]
    out = ort.InferenceSession(str(ref.path)).run(None, source.evaluation.feeds[0])[0]
    assert out.shape == (1, 22, 2100) and 0.0 <= out[0, 4:].min() and out[0, 4:].max() <= 1.0  # class scores
