"""The LiteRT backend on real .tflite models (from the mediapipe wheel, extracted by `make setup`), the
TensorRT backend's trtexec side (command, version, parsers, a stand-in trtexec) and its wiring with TensorRT
absent, and the vcgencmd and RAPL readers (Jetson's: test_jetson_telemetry.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from agent import telemetry
from agent.backends import available_backends, backend_class
from agent.errors import JobError
from controller.errors import JobFailed, ModelError
from controller.measure.api import bench, profile
from controller.measure.settings import MeasureSettings

DATA = Path(__file__).parent / "data"
MODELS = Path(sys.prefix) / "share" / "edgefarm-models"
FAST = MeasureSettings(threads=1, warmup=3, min_iterations=20, min_seconds=0.05, profile_iterations=5)


@pytest.fixture(scope="module")
def face_tflite() -> Path:
    path = MODELS / "face_detection_short_range.tflite"
    if not path.exists():
        pytest.skip(f"{path} is missing: run `make setup` (scripts/fetch_models.py extracts it)")
    return path


def test_litert_backend_runs_and_profiles_a_real_tflite_model(face_tflite):
    from agent.backends.tflite import LiteRTBackend

    backend = LiteRTBackend()
    backend.load(face_tflite, threads=1)
    spec = backend.inputs()[0]
    assert (spec.name, spec.shape, spec.dtype) == ("input", [1, 128, 128, 3], np.float32)
    outs = backend.run({"input": np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)})
    assert [o.shape for o in outs] == [(1, 896, 16), (1, 896, 1)]
    rows, total_ms, runs = backend.layer_profile(skip_runs=0)
    types = {r["op_type"] for r in rows}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= types and "DEQUANTIZE" not in types   # weights fold into convs
    assert total_ms > 0 and runs > 0 and abs(sum(r["percent"] for r in rows) - 100) < 1e-6
    # the ops timed alone add up to about the whole model (within a factor of 2 on a noisy machine)
    assert 0.5 < sum(r["time_ms"] for r in rows) / total_ms < 2.0
    trace = backend.profile_trace(skip_runs=0, max_runs=10)   # one synthesised run in ORT's event format
    nodes = [e for e in trace["traceEvents"] if e.get("cat") == "Node"]
    assert [e["args"]["op_name"] for e in nodes] == [r["op_type"] for r in rows]
    run = next(e for e in trace["traceEvents"] if e["name"] == "model_run")
    assert run["dur"] == pytest.approx(sum(e["dur"] for e in nodes)) == pytest.approx(
        sum(r["time_ms"] for r in rows) * 1000, abs=0.01 * len(rows))
    assert trace["otherData"]["model_median_ms"] == total_ms and trace["otherData"]["synthesised"]


def test_tflite_models_through_the_farm(shared_agent, face_tflite, tmp_path):
    client, _ = shared_agent
    assert "tflite" in [b.name for b in client.info().backends]
    res = bench(face_tflite, client, FAST, tmp_path / "r.db")
    assert res.backend == "tflite" and res.latency_ms["p50"] > 0 and res.threads == 1
    prof = profile(MODELS / "selfie_segmentation.tflite", client, FAST, tmp_path / "r.db")
    assert prof.backend == "tflite" and len(prof.layers) > 50 and prof.layers[0]["time_ms"] >= prof.layers[-1]["time_ms"]


def test_a_broken_tflite_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TFLite/LiteRT model"):
        bench(bad, "local")


# ---- TensorRT: parsers and wiring ---------------------------------------------------------------

def test_trtexec_profile_and_times_parse():
    from agent.backends.trtexec import layer_type, parse_trtexec_profile, parse_trtexec_times
    from agent.trace import synthesised_trace

    rows, total, runs = parse_trtexec_profile(json.loads((DATA / "trtexec_profile.json").read_text()))
    assert runs == 200 and len(rows) == 5
    assert rows[0]["name"] == "/conv1/Conv + /relu1/Relu" and rows[0]["op_type"] == "Conv"
    assert rows[0]["time_ms"] == pytest.approx(0.123054) and rows[0]["percent"] == pytest.approx(31.4016)
    assert total == pytest.approx(0.123054 + 0.0914735 + 0.105216 + 0.018432 + 0.053709)
    assert layer_type("/fc/Gemm") == "Gemm"
    trace = synthesised_trace([[(r, r["time_ms"]) for r in rows]], {"backend": "tensorrt"})   # as the runner does
    assert [e["name"] for e in trace["traceEvents"][2:]] == [r["name"] + "_kernel_time" for r in rows]
    assert trace["traceEvents"][1]["dur"] == pytest.approx(total * 1000, abs=0.01)   # whole ns per layer
    times = parse_trtexec_times(json.loads((DATA / "trtexec_times.json").read_text()))
    assert times == pytest.approx([0.392, 0.391, 0.398])
    with pytest.raises(JobError, match="count"):
        parse_trtexec_profile([{"name": "x"}])
    with pytest.raises(JobError, match="no inference"):
        parse_trtexec_times([])


def test_trtexec_command_per_tensorrt_version(tmp_path):
    from agent.backends.trtexec import TrtexecRun, trtexec_command

    run = TrtexecRun(tmp_path / "m.onnx", tmp_path / "e.engine", tmp_path / "t.json", "int8", 100,
                     tmp_path / "p.json", {"images": [1, 3, 640, 640], "x:0": [1, 8]}, "10.3.0")
    cmd = trtexec_command(run, "/usr/src/tensorrt/bin/trtexec")
    assert cmd[0] == "/usr/src/tensorrt/bin/trtexec" and f"--onnx={run.onnx_path}" in cmd
    assert {"--fp16", "--int8", "--profilingVerbosity=detailed", f"--saveEngine={run.engine_path}",
            "--separateProfileRun", f"--exportProfile={run.profile_json}"} <= set(cmd)
    assert "--shapes=images:1x3x640x640,'x:0':1x8" in cmd      # sampleOptions.cpp's quoting of a name with ':'
    v11 = trtexec_command(TrtexecRun(run.onnx_path, run.engine_path, run.times_json, "int8", version="11.4.0"))
    assert not {"--fp16", "--int8"} & set(v11)                  # removed in 11: strongly typed networks only
    run.engine_path.write_bytes(b"cached")
    cmd = trtexec_command(TrtexecRun(run.onnx_path, run.engine_path, run.times_json, "fp16", version="8.5.2"))
    assert f"--loadEngine={run.engine_path}" in cmd and not any(c.startswith(("--onnx", "--fp16")) for c in cmd)


def test_engine_cache_key_covers_version_verbosity_and_shapes():
    from agent.backends.trtexec import engine_key

    a = engine_key("d" * 64, "fp16", "10.3.0", "Orin")
    assert a == engine_key("d" * 64, "fp16", "10.3.0", "Orin")
    others = [engine_key("d" * 64, "int8", "10.3.0", "Orin"), engine_key("d" * 64, "fp16", "10.3.1", "Orin"),
              engine_key("d" * 64, "fp16", "10.3.0", "Orin", "detailed"),
              engine_key("d" * 64, "fp16", "10.3.0", "Orin", shapes={"images": [2, 3, 640, 640]})]
    assert a not in others and len(set(others)) == len(others)


def test_trtexec_version_from_its_banner():
    """The banner trtexec prints first ('&&&& RUNNING TensorRT.trtexec [TensorRT vN] # ...'), N being
    NvInferVersion.h's NV_TENSORRT_VERSION: MAJOR*1000+MINOR*100+PATCH on 8.x, MAJOR*10000+... from 10.
    v8001 as printed on a Jetson in OAID/Tengine#1235; v100300 is JetPack 6.1/6.2's TensorRT."""
    from agent.backends.trtexec import major, parse_banner_version

    banner = "&&&& RUNNING TensorRT.trtexec [TensorRT v{}] # /usr/src/tensorrt/bin/trtexec --onnx=m.onnx"
    assert [parse_banner_version(banner.format(n)) for n in (8001, 8502, 8601, 100300, 110400)] == [
        "8.0.1", "8.5.2", "8.6.1", "10.3.0", "11.4.0"]
    assert parse_banner_version("TensorRT v100300") is None and major("10.3.0.26") == 10 and major("") == 0


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    """An executable standing in for trtexec at the path configured by EDGEFARM_TRTEXEC: prints the 10.3
    banner, records its arguments, and writes the JSON files trtexec writes (tests/agent/data), or fails with
    trtexec's error lines on stderr when the model is named broken.onnx."""
    from agent.backends import trtexec

    exe = tmp_path / "bin" / "trtexec"
    exe.parent.mkdir()
    exe.write_text(f"""#!{sys.executable}
import json, shutil, sys
args = sys.argv[1:]
print("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec " + " ".join(args))
open({str(tmp_path / "argv.jsonl")!r}, "a").write(json.dumps(args) + "\\n")
if any(a.endswith("broken.onnx") for a in args):
    print("[I] Start parsing network model.")
    print("[E] ModelImporter.cpp:949: While parsing node number 3 [Hardmax]: No importer registered", file=sys.stderr)
    print("[E] Failed to parse onnx file", file=sys.stderr)
    sys.exit(1)
opt = dict(a[2:].split("=", 1) for a in args if "=" in a)
shutil.copy({str(DATA / "trtexec_times.json")!r}, opt["exportTimes"])
if "exportProfile" in opt:
    shutil.copy({str(DATA / "trtexec_profile.json")!r}, opt["exportProfile"])
if "saveEngine" in opt:
    open(opt["saveEngine"], "wb").write(b"plan")
""")
    exe.chmod(0o755)
    monkeypatch.setenv("EDGEFARM_TRTEXEC", str(exe))
    trtexec.trtexec_version.cache_clear()
    yield exe
    trtexec.trtexec_version.cache_clear()


def test_trtexec_runs_found_where_configured_and_reports_its_stderr(fake_trtexec, tmp_path):
    from agent.backends.trtexec import find_trtexec, run_trtexec, trtexec_version

    assert find_trtexec() == str(fake_trtexec) and trtexec_version() == "10.3.0"
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    work = tmp_path / "work"
    work.mkdir()
    bench = run_trtexec(model, "fp16", 50, work, profile=False, shapes={"images": [1, 3, 64, 64]})
    prof = run_trtexec(model, "fp16", 50, work, profile=True, shapes={"images": [1, 3, 64, 64]})
    again = run_trtexec(model, "fp16", 50, work, profile=False, shapes={"images": [1, 3, 64, 64]})
    assert bench["times_ms"] == pytest.approx([0.392, 0.391, 0.398]) and len(prof["layers"]) == 5
    assert bench["engine"] == again["engine"] != prof["engine"]      # the profile's DETAILED engine is its own
    calls = [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()][1:]  # after --help
    assert "--shapes=images:1x3x64x64" in calls[0] and "--profilingVerbosity=detailed" in calls[1]
    assert any(a.startswith("--loadEngine=") for a in calls[2])
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"model")
    with pytest.raises(JobError, match=r"trtexec \(TensorRT 10.3.0\) failed with exit code 1: "
                                       r"\[E\] ModelImporter.cpp:949: .*Hardmax.* \| \[E\] Failed to parse onnx file"):
        run_trtexec(broken, "fp16", 50, work, profile=False)


def test_trtexec_is_found_where_jetpack_puts_it(tmp_path, monkeypatch):
    from agent.backends import trtexec

    jetpack = tmp_path / "usr" / "src" / "tensorrt" / "bin" / "trtexec"
    jetpack.parent.mkdir(parents=True)
    jetpack.write_text("#!/bin/sh\n")
    jetpack.chmod(0o755)
    monkeypatch.delenv("EDGEFARM_TRTEXEC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(trtexec, "TRTEXEC_PLACES", (str(jetpack),))
    assert trtexec.find_trtexec() == str(jetpack)
    monkeypatch.setattr(trtexec, "TRTEXEC_PLACES", ())
    assert trtexec.find_trtexec() is None
    with pytest.raises(JobError, match="set EDGEFARM_TRTEXEC to its path"):
        trtexec.run_trtexec(tmp_path / "m.onnx", "fp16", 10, tmp_path, profile=False)


def test_tensorrt_absent_is_reported_not_crashed(shared_agent, conv_onnx, tmp_path):
    pytest.importorskip("numpy")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert "tensorrt" not in [b["name"] for b in available_backends()]
    with pytest.raises(JobError, match="backend 'tensorrt' is not installed on this device"):
        backend_class("tensorrt")
    client, _ = shared_agent
    from controller.measure.preflight import check_model

    ref = check_model(conv_onnx)
    ref.backend = "tensorrt"
    with pytest.raises(JobFailed, match="BACKEND_UNAVAILABLE.*tensorrt"):
        bench(ref, client, FAST, tmp_path / "r.db")


# ---- telemetry parsers on recorded output --------------------------------------------------------

def test_vcgencmd_parsers():
    assert telemetry.parse_vcgencmd_temp("temp=47.2'C") == 47.2
    assert telemetry.parse_vcgencmd_clock("frequency(48)=1500398464") == 1500398464
    t = telemetry.parse_throttled("throttled=0x50005")
    assert t["now"] and t["reasons"] == ["under-voltage now", "throttled now", "under-voltage occurred",
                                         "throttling occurred"]
    assert telemetry.parse_throttled("throttled=0x0") == {"value": 0, "now": False, "reasons": []}
    assert telemetry.parse_throttled("garbage") == {}


def test_rapl_counters_and_wraparound(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    (zone / "energy_uj").write_text("262143000000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()     # a sub-zone (core): not counted twice
    before = telemetry.rapl_energy_uj(tmp_path)
    (zone / "energy_uj").write_text("1671150\n")   # wrapped
    after = telemetry.rapl_energy_uj(tmp_path)
    assert list(before) == ["package-0"]
    assert telemetry.rapl_delta_j(before, after) == pytest.approx((262143328850 - 262143000000 + 1671150) / 1e6)
    assert telemetry.rapl_delta_j({}, after) is None
