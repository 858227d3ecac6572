"""farmctl end to end: each command a real process, talking gRPC to a real embedded agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.measure.store import ResultsStore
from tests import models

FAST = ["--warmup", "2", "--min-iterations", "10", "--min-seconds", "0.05", "--threads", "1"]


def farmctl(*args: str, store: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    return subprocess.run([sys.executable, "-m", "controller", "-q", "--store", str(store), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_bench_json_and_store(tmp_path, conv_onnx):
    store = tmp_path / "r.db"
    out = farmctl("bench", str(conv_onnx), "--json", *FAST, store=store)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert set(res["latency_ms"]) == {"min", "p50", "p90", "p95", "p99", "max", "mean", "std"}
    assert res["iterations"] >= 10 and isinstance(res["flags"], list) and res["cv"] >= 0
    assert res["threads"] == 1 and res["device"] == "local" and res["upload_bytes"] >= 0
    again = json.loads(farmctl("bench", str(conv_onnx), "--json", *FAST, store=store).stdout)
    assert again["upload_bytes"] == 0  # the embedded agent's cache persists between runs
    db = ResultsStore(store)
    runs = db.runs()
    assert [r["id"] for r in runs] == [again["run_id"], res["run_id"]]
    assert runs[0]["p50_ms"] == pytest.approx(again["latency_ms"]["p50"])
    assert runs[0]["model_digest"] == res["model_digest"] and runs[0]["threads"] == 1
    assert runs[0]["device_fingerprint"] and runs[0]["settings_key"] == runs[1]["settings_key"]


def test_profile_json_has_layers_with_flops(tmp_path, conv_onnx):
    out = farmctl("profile", str(conv_onnx), "--json", "--iterations", "5", "--warmup", "1", store=tmp_path / "r.db")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["total_ms"] > 0
    layers = res["layers"]
    assert [r["time_ms"] for r in layers] == sorted((r["time_ms"] for r in layers), reverse=True)
    for key in ("name", "op_type", "time_ms", "percent", "flops", "memory_bytes"):
        assert all(key in r for r in layers)
    gemm = next(r for r in layers if r["op_type"] == "Gemm")
    assert gemm["flops"] == 2 * 8 * 4
    conv = next(r for r in layers if r["op_type"] == "Conv")
    assert conv["source_nodes"] == ["conv", "relu"]  # ORT fused Relu into the Conv and renamed it
    assert conv["label"] == "conv +1 fused" and all(isinstance(r["memory_bytes"], int) for r in layers)
    table = farmctl("profile", str(conv_onnx), "--iterations", "5", "--warmup", "1", store=tmp_path / "r.db")
    assert "conv +1 fused" in table.stdout     # one naming in the CLI's table and the Python/JSON result
    assert conv["flops"] == 2 * 8 * 32 * 32 * 27 + 8 * 32 * 32  # from the graph, not ORT's padded shapes
    assert res["total_flops"] == 2 * 8 * 32 * 32 * 27 + 8 * 32 * 32 + 8 * 32 * 32 + 2 * 8 * 4
    stored = ResultsStore(tmp_path / "r.db").layers(res["run_id"])
    assert [r["name"] for r in stored] == [r["name"] for r in layers]


@pytest.mark.slow   # profiles and plots
def test_profile_table_marks_bottlenecks_and_plots(tmp_path, conv_onnx):
    plot = tmp_path / "layers.png"
    out = farmctl("profile", str(conv_onnx), "--iterations", "5", "--bottleneck-percent", "1",
                  "--plot", str(plot), store=tmp_path / "r.db")
    assert out.returncode == 0, out.stderr
    assert "* bottleneck: 1% or more" in out.stdout
    assert any(line.startswith("* ") and "Conv" in line for line in out.stdout.splitlines())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_devices_lists_the_embedded_agent(tmp_path):
    out = farmctl("devices", "--json", store=tmp_path / "r.db", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (local,) = json.loads(out.stdout)
    assert local["name"] == "local" and local["status"] == "ok"
    assert local["info"]["backends"][0]["name"] == "onnxruntime"


def test_devices_says_when_tensorrt_runs_through_trtexec():
    from controller.cli.measure import backend_label

    assert backend_label({"name": "onnxruntime", "version": "1.23.2", "providers": ["CPUExecutionProvider"]}) == \
        "onnxruntime 1.23.2"
    jetpack5 = {"name": "tensorrt", "version": "8.5.2",
                "providers": ["trtexec", "no TensorRT Python bindings in this Python: No module named 'tensorrt'"]}
    assert backend_label(jetpack5) == ("tensorrt 8.5.2 via trtexec (no TensorRT Python bindings in this Python: "
                                       "No module named 'tensorrt')")


def test_devices_reports_an_unreachable_inventory_entry(tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local: {embedded: true}\n  ghost: {address: '127.0.0.1:9', class: rpi4}\n")
    out = farmctl("--inventory", str(inv), "devices", store=tmp_path / "r.db")
    assert out.returncode == 1
    assert "ghost" in out.stdout and "UNREACHABLE: cannot reach farm-agent 'ghost' at 127.0.0.1:9" in out.stdout


@pytest.mark.parametrize("make_args, words", [
    (lambda d, m: ["bench", str(d / "missing.onnx")], "model file"),
    (lambda d, m: ["bench", str(models.random_bytes(d / "noise.onnx"))], "is not a valid ONNX model"),
    (lambda d, m: ["bench", str(models.truncated(m, d / "half.onnx"))], "is not a valid ONNX model"),
    (lambda d, m: ["bench", str(models.unknown_op_model(d / "u.onnx")), *FAST],
     "UNSUPPORTED_OP: the model uses operator 'FrobnicateTensor'"),
    (lambda d, m: ["bench", str(m), "--input-shape", "x=1,3,64,64"], "dimension 2 is fixed at 32"),
    (lambda d, m: ["bench", str(m), "--input-shape", "x=1,3,a"], "dimensions must be integers"),   # exit 2
    (lambda d, m: ["bench", str(m), "--device", "127.0.0.1:9"], "cannot reach farm-agent"),
    (lambda d, m: ["bench", str(m), "--device", "nowhere"], "unknown device 'nowhere'"),
    (lambda d, m: ["bench", str(m), "--time-limit", "1", "--min-seconds", "30", "--max-seconds", "60"],
     "TIMEOUT: the job ran past its time limit of 1 s"),
    (lambda d, m: ["report"], "no results store"),
    (lambda d, m: ["bench", str(models.external_data_model(m, d / "ext.onnx"))], "save_as_external_data=False"),
    (lambda d, m: ["bench", str(d)], "is not a file"),
    (lambda d, m: ["bench", str(models.random_bytes(d / "model.pb"))], "measures .onnx, .tflite models so far"),
    (lambda d, m: ["bench", str(models.random_bytes(d / "model.tflite"))], "is not a TFLite/LiteRT model"),
    (lambda d, m: ["bench", "example:resnet"], "built-in examples are: mobilenetv2"),
])
def test_bad_input_gives_one_clear_error_line(tmp_path, conv_onnx, make_args, words):
    out = farmctl(*make_args(tmp_path, conv_onnx), store=tmp_path / "fresh.db")
    usage = words == "dimensions must be integers"        # a wrong command line: 2; a failure at run time: 1
    assert out.returncode == (2 if usage else 1), out.stdout + out.stderr
    assert out.stderr.startswith("farmctl: error: ") and words in out.stderr


def test_dynamic_dimensions_need_input_shape(tmp_path, dynamic_onnx):
    out = farmctl("bench", str(dynamic_onnx), *FAST, store=tmp_path / "r.db")
    assert out.returncode == 1 and "'x' [batch,3,side,side] (dynamic: batch, side, side)" in out.stderr
    assert "--input-shape x=N,3,N,N" in out.stderr
    ok = farmctl("bench", str(dynamic_onnx), "--json", *FAST, "--input-shape", "x=2,3,16,16",
                 store=tmp_path / "r.db")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["input_shapes"] == {"x": [2, 3, 16, 16]}


def test_failed_job_is_stored_as_failed(tmp_path, model_dir):
    store = tmp_path / "r.db"
    out = farmctl("bench", str(models.unknown_op_model(model_dir / "u2.onnx")), *FAST, store=store)
    assert out.returncode == 1
    (run,) = ResultsStore(store).runs()
    assert run["status"] == "failed" and run["error_code"] == "UNSUPPORTED_OP" and run["p50_ms"] is None


def test_progress_lines_on_stderr(tmp_path, conv_onnx):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    out = subprocess.run([sys.executable, "-m", "controller", "--store", str(tmp_path / "r.db"), "bench",
                          str(conv_onnx), *FAST], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "[local] started on onnxruntime" in out.stderr and "[local] done" in out.stderr
    assert "latency ms" in out.stdout and "p50" in out.stdout


def test_a_result_flag_is_explained_where_it_is_printed():
    from controller.cli.flags import flag_text

    assert flag_text("noisy", 0.123).startswith("noisy: the timing varied (CV 12.3% > 10%)")
    assert "rerun" in flag_text("noisy", 0.2) and "frequency" in flag_text("throttled", 0.01)


def test_report_plot_gives_each_model_its_own_latency_axis():
    import matplotlib.pyplot as plt

    from controller.measure.report import latency_figure

    runs = [{"id": i, "model_name": m, "device_name": "local", "kind": "benchmark", "threads": 1, "status": "ok",
             "p50_ms": p, "p90_ms": p * 1.1} for i, (m, p) in enumerate([("digits", 0.4), ("mobilenetv2", 14.0),
                                                                          ("digits", 0.5)])]
    fig = latency_figure(runs, plt)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["digits: latency p50 (ms), whisker to p90", "mobilenetv2: latency p50 (ms), whisker to p90"]
    plt.close(fig)


def test_bench_without_a_model_says_which_example_it_measures(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    out = subprocess.run([sys.executable, "-m", "controller", "--store", str(tmp_path / "r.db"), "bench", "--json",
                          *FAST], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "built-in bench example, a MobileNetV2 on 1x3x224x224" in out.stderr
    assert "digits example" in out.stderr  # and that optimize's example is another one
    assert json.loads(out.stdout)["input_shapes"]


def test_both_programs_say_their_version():
    for program in ("controller", "agent"):
        out = subprocess.run([sys.executable, "-m", program, "--version"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3])))
        assert out.returncode == 0 and out.stdout.strip() in ("farmctl 0.1.0", "farm-agent 0.1.0"), out
