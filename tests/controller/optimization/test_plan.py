"""The plan of candidates: TFLite twins of the exported PyTorch candidates, rewrite candidates where a
pattern matches, and pruning ratios guided by the device profile."""

from __future__ import annotations

from controller.optimization.guided import module_name, ratios_from_profile
from controller.optimization.plot import pareto_front


def test_the_plan_adds_tflite_twins_of_the_exported_pytorch_candidates(tmp_path):
    from types import SimpleNamespace

    from controller.optimization.plan import plan

    source = SimpleNamespace(baseline=tmp_path / "m.onnx", calibration=None, torch=SimpleNamespace(
        model=None, train=None, input_shape=(1, 1, 28, 28)))
    cands, _ = plan(source, ["prune", "distill", "int8-minmax"], tmp_path, layer_ratios=lambda r: {}, tflite=True)
    names = {c.name: c for c in cands}
    assert {"tflite", "prune-30-tflite", "prune-50-tflite", "prune-50-profiled-tflite", "distill-tflite"} <= set(names)
    assert "distill+int8-minmax-tflite" not in names and names["distill-tflite"].suffix == ".tflite"
    assert names["distill-tflite"].build is names["distill"].build      # the same training, another export


def test_rewrite_candidates_are_planned_where_a_pattern_matches(tmp_path):
    """`rewrite`: each activation rewrite the model has, alone and under INT8; none on a model without."""
    from controller.optimization.plan import plan
    from controller.optimization.sources import onnx_source

    cands, skipped = plan(onnx_source("example:yolov8n"), ["rewrite", "int8-minmax"], tmp_path)
    names = [c.name for c in cands]
    assert {"rewrite-swish", "rewrite-swish+int8-minmax", "rewrite-div_to_mul"} <= set(names)
    assert names.index("rewrite-swish") < names.index("rewrite-swish+int8-minmax")   # built from its file
    assert not [s for s in skipped if s["technique"] == "rewrite"]
    _, skipped = plan(onnx_source("example:mobilenetv2"), ["rewrite"], tmp_path)
    assert "matches a pattern" in next(s["reason"] for s in skipped if s["technique"] == "rewrite")


def test_profile_guides_pruning_ratios_and_the_pareto_front():
    assert module_name("/features/features.1/conv/conv.0/Conv") == "features.1.conv.0"
    assert module_name("/features/features.0/features.0.0/Conv") == "features.0.0"
    layers = [{"name": "a", "op_type": "Conv", "time_ms": 3.0, "source_nodes": ["/f/f.0/Conv"]},
              {"name": "b", "op_type": "Conv", "time_ms": 1.0, "source_nodes": ["/f/f.1/Conv"]},
              {"name": "c", "op_type": "Relu", "time_ms": 9.0}]
    ratios = ratios_from_profile(layers, {"f.0", "f.1"}, 0.3)
    assert ratios["f.0"] > 0.3 > ratios["f.1"]
    assert pareto_front([(1.0, 0.9), (2.0, 0.95), (3.0, 0.94), (0.5, 0.5)]) == [3, 0, 1]
