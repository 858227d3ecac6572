"""farmctl quantize / mixed-precision / fuse / rewrite / evaluate, called as the console script does."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from controller.cli.main import main
from tests import models
from tests.optimizers import graphs


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_quantize_then_evaluate(tmp_path, capsys):
    model = graphs.convnet(tmp_path / "net.onnx")
    data = np.random.default_rng(0).standard_normal((12, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=data)
    out = tmp_path / "net.q.onnx"
    assert main(["quantize", str(model), "--calibration-data", str(tmp_path / "cal.npz"), "-o", str(out),
                 "--algorithm", "percentile", "--eval-data", str(tmp_path / "cal.npz"), "--json"]) == 0
    doc = _json(capsys)
    assert doc["path"] == str(out) and doc["record"]["settings"]["algorithm"] == "percentile"
    assert doc["evaluation"]["fidelity"]["cosine"] > 0.98
    ort.InferenceSession(str(out))

    assert main(["evaluate", str(out), "--data", str(tmp_path / "cal.npz"), "--reference", str(model)]) == 0
    text = capsys.readouterr().out
    assert "12 samples" in text and "cosine similarity: 0.99" in text and "SQNR" in text


def test_quantize_types_and_op_set_from_the_cli(tmp_path, capsys):
    model = graphs.convnet(tmp_path / "net.onnx")
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32))
    assert main(["quantize", str(model), "--calibration-data", str(tmp_path / "cal.npz"), "--op-types", "compute",
                 "--activation-type", "int8", "--json"]) == 0
    settings = _json(capsys)["record"]["settings"]
    assert settings["activation_type"] == "int8" and "Sigmoid" not in settings["op_types"]
    assert "Conv" in settings["op_types"]
    assert main(["quantize", str(model), "--calibration-data", str(tmp_path / "cal.npz"), "--json"]) == 0
    settings = _json(capsys)["record"]["settings"]
    assert settings["activation_type"] == "uint8" and list(settings["op_types"]) == []   # every op


def test_fuse_and_rewrite_print_what_changed(tmp_path, capsys):
    model = graphs.convnet(tmp_path / "net.onnx")
    assert main(["fuse", str(model), "--target", "portable"]) == 0
    text = capsys.readouterr().out
    assert "BatchNormalization folded into Conv: 3" in text and (tmp_path / "net.fused.onnx").exists()
    gelu = graphs.rewrite_graph("gelu", tmp_path / "gelu.onnx")
    assert main(["rewrite", str(gelu), "--rewrite", "gelu", "--json"]) == 0
    assert _json(capsys)["record"]["changes"] == {"gelu": 1}
    hardswish = graphs.rewrite_graph("hardswish", tmp_path / "hs.onnx")
    assert main(["rewrite", str(hardswish), "--rewrite", "hardswish", "--json"]) == 0
    assert _json(capsys)["record"]["changes"] == {"hardswish": 3}


def test_mixed_precision_streams_progress(tmp_path, capsys):
    model = graphs.mlp(tmp_path / "mlp.onnx")
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32))
    assert main(["mixed-precision", str(model), "--calibration-data", str(tmp_path / "cal.npz"),
                 "--threshold", "0.999"]) == 0
    captured = capsys.readouterr()
    assert "full INT8: cosine" in captured.err and "sensitivity 1/4" in captured.err
    assert "kept_float: ['fc2'" in captured.out


def test_bad_input_exits_1_with_the_fix(tmp_path, capsys):
    model = graphs.convnet(tmp_path / "net.onnx")
    np.savez(tmp_path / "wrong.npz", image=np.zeros((2, 3, 32, 32), np.float32))
    assert main(["quantize", str(model), "--calibration-data", str(tmp_path / "wrong.npz")]) == 1
    err = capsys.readouterr().err
    assert "farmctl: error:" in err and "missing 'x'" in err and "unknown 'image'" in err
    assert main(["quantize", str(model)]) == 2   # the command line lacks a flag: said in its own words
    err = capsys.readouterr().err
    assert "static INT8 needs --calibration-data" in err and "calibration_data=" not in err
    assert not (tmp_path / "net.int8.onnx").exists()  # nothing half-written is left behind


def test_evaluate_on_synthetic_data_as_the_help_says(tmp_path, capsys):
    model = models.conv_model(tmp_path / "m.onnx")
    assert main(["evaluate", str(model), "--eval-data", "synthetic", "--reference", str(model)]) == 0
    assert "1.0000" in capsys.readouterr().out
