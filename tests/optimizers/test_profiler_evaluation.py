"""Profiler (in process and through a real local agent) and the evaluation metrics."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from optimizers import OptimizerError, Profiler, compare_outputs, evaluate
from optimizers.data.feeds import ImagePreprocess, load_data


def test_cpu_profile_layers_add_up_and_map_to_graph_nodes(mobilenet):
    prof = Profiler(mobilenet).profile(device="cpu", iterations=5, warmup=2)
    assert prof.device == "cpu" and prof.iterations == 5 and prof.threads == 1
    assert math.isclose(sum(layer.percentage for layer in prof.layers), 100.0, rel_tol=1e-6)
    assert [layer.time_ms for layer in prof.layers] == sorted((layer.time_ms for layer in prof.layers), reverse=True)
    convs = [layer for layer in prof.layers if layer.op_type == "Conv"]
    assert convs and all(layer.flops > 0 and layer.memory_mb > 0 for layer in convs)
    # ORT fused Conv+BatchNorm+Clip into one kernel: the row names all three graph nodes
    assert any(len(layer.source_nodes) == 3 for layer in convs)
    hot = prof.find_bottlenecks(threshold=0.05)
    assert hot and all(layer.percentage >= 5.0 for layer in hot)
    times = prof.layer_times()
    assert math.isclose(sum(times.values()), sum(layer.time_ms for layer in prof.layers), rel_tol=1e-6)
    with pytest.raises(OptimizerError, match="fraction"):
        prof.find_bottlenecks(threshold=5)


def test_profile_on_a_farm_device_asks_the_agent(convnet, tmp_path):
    prof = Profiler(convnet).profile(device="local", iterations=3, warmup=1, store=tmp_path / "r.db")
    assert prof.device != "cpu" and prof.layers
    assert {layer.op_type for layer in prof.layers} >= {"Conv", "Gemm"}
    assert sum(layer.flops for layer in prof.layers) > 0


def test_profile_with_given_input_data(mlp):
    prof = Profiler(mlp).profile(input_data=np.ones((3, 64), np.float32), iterations=2, warmup=0)
    assert {layer.op_type for layer in prof.layers} & {"MatMul", "Gemm", "FusedMatMul"}


def test_fidelity_numbers():
    rng = np.random.default_rng(0)
    ref = [[rng.standard_normal((2, 10)).astype(np.float32)] for _ in range(5)]
    same = compare_outputs(ref, ref)
    assert same.cosine == pytest.approx(1.0) and same.sqnr_db == math.inf and same.top1_agreement == 1.0
    noisy = [[o[0] + 0.1 * np.linalg.norm(o[0]) / np.sqrt(o[0].size) * rng.standard_normal(o[0].shape)]
             for o in ref]
    fid = compare_outputs(ref, noisy)
    assert 18 < fid.sqnr_db < 22  # noise power 1% of signal power -> 20 dB
    flipped = [[-o[0]] for o in ref]
    assert compare_outputs(ref, flipped).cosine == pytest.approx(-1.0)


def test_accuracy_with_labels_from_npz(convnet, convnet_data, tmp_path):
    from optimizers.evaluation.evaluate import run_outputs

    model_outputs = run_outputs(convnet, load_data(convnet_data[:8], onnx.load(str(convnet))))
    labels = np.array([o[0].argmax() for o in model_outputs])
    npz = tmp_path / "eval.npz"
    np.savez(npz, x=convnet_data[:8], labels=labels)
    assert evaluate(convnet, npz).accuracy == 1.0
    wrong = (labels + 1) % 10
    assert evaluate(convnet, convnet_data[:8], labels=wrong).accuracy == 0.0
    ev = evaluate(convnet, npz, reference=convnet)
    assert ev.fidelity.cosine == pytest.approx(1.0) and ev.samples == 8


def test_image_folder_preprocessing_is_stated_and_applied(mobilenet, photos):
    ds = load_data(photos, onnx.load(str(mobilenet)), preprocess=ImagePreprocess(mean=(0, 0, 0), std=(1, 1, 1)))
    x = np.concatenate([next(iter(f.values())) for f in ds.feeds])
    assert x.shape == (16, 3, 224, 224) and 0.0 <= x.min() and x.max() <= 1.0
    assert "center crop" in ImagePreprocess().describe()


def test_input_shapes_fix_an_image_folder_for_a_dynamic_model_and_are_checked(photos, tmp_path):
    from optimizers.errors import DataMismatch
    from tests import models

    model = onnx.load(str(models.conv_model(tmp_path / "dyn.onnx", batch="batch", size="side")))
    with pytest.raises(DataMismatch, match="fix them with --input-shape x=N,3,N,N"):
        load_data(photos, model)
    ds = load_data(photos, model, input_shapes={"x": [1, 3, 48, 48]}, max_samples=2)
    assert [f["x"].shape for f in ds.feeds] == [(1, 3, 48, 48)] * 2
    for shapes, words in (({"y": [1, 3, 48, 48]}, "--input-shape names 'y', but the model's inputs are: x"),
                          ({"x": [1, 4, 48, 48]}, "dimension 1 is fixed at 3"),
                          ({"x": [1, 3, 48]}, "has 4 dimensions"),
                          ({"x": [1, 3, 0, 48]}, "every dimension must be a positive integer")):
        with pytest.raises(DataMismatch, match=words):
            load_data(photos, model, input_shapes=shapes)
