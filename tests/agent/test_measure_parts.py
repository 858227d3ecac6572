"""Pure parts of measurement: statistics, input shapes, telemetry flags, the ORT profile parser."""

from __future__ import annotations

import numpy as np
import pytest

from agent.backends.onnxruntime import parse_ort_profile
from agent.errors import JobError
from agent.stats import latency_stats
from agent.telemetry import cpu_frequencies, is_throttled, result_flags, thermal_zones
from agent.trace import ort_trace
from core.inputs import InputSpec, make_feeds, resolve_shapes


def test_latency_stats():
    s = latency_stats([i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    assert s["min_ms"] == 1 and s["max_ms"] == 100 and s["count"] == 100
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["mean_ms"] == pytest.approx(50.5)
    assert s["p95_ms"] == pytest.approx(95.05)
    assert s["cv"] == pytest.approx(np.std(np.arange(1, 101), ddof=1) / 50.5)
    with pytest.raises(ValueError):
        latency_stats([])


SPECS = [InputSpec("x", np.dtype(np.float32), ["batch", 3, None, 224]),
         InputSpec("ids", np.dtype(np.int64), [1, 8])]


@pytest.mark.parametrize("given, words", [
    ({}, "'x' [batch,3,?,224] (dynamic: batch, ?); fix them with --input-shape x=N,3,N,224"),
    ({"x": [1, 3, 224, 100]}, "dimension 3 is fixed at 224"),
    ({"x": [1, 3, 224]}, "has 4 dimensions"),
    ({"x": [1, 3, 0, 224]}, "positive integer"),
    ({"x": [1, 3, 224, 224], "y": [1]}, "--input-shape names 'y'"),
])
def test_resolve_shapes_errors(given, words):
    with pytest.raises(JobError, match=None) as info:
        resolve_shapes(SPECS, given)
    assert info.value.code == "INVALID_INPUT" and words in info.value.message


def test_resolve_shapes_and_feeds():
    shapes = resolve_shapes(SPECS, {"x": [2, 3, 160, 224]})
    assert shapes == {"x": [2, 3, 160, 224], "ids": [1, 8]}
    feeds = make_feeds(SPECS, shapes)
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (2, 3, 160, 224)
    assert feeds["ids"].dtype == np.int64 and set(np.unique(feeds["ids"])) <= {0, 1}
    np.testing.assert_array_equal(make_feeds(SPECS, shapes)["x"], feeds["x"])  # deterministic


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_telemetry_reads_sysfs(tmp_path):
    write(tmp_path / "thermal/thermal_zone0/temp", "71500\n")
    write(tmp_path / "thermal/thermal_zone0/type", "cpu-thermal\n")
    write(tmp_path / "thermal/thermal_zone0/trip_point_0_type", "passive\n")
    write(tmp_path / "thermal/thermal_zone0/trip_point_0_temp", "75000\n")
    write(tmp_path / "cpu/cpu0/cpufreq/scaling_cur_freq", "1500000")
    write(tmp_path / "cpu/cpu0/cpufreq/scaling_max_freq", "1000000")
    write(tmp_path / "cpu/cpu0/cpufreq/cpuinfo_max_freq", "1800000")
    zones = thermal_zones(tmp_path / "thermal")
    assert zones == [{"name": "cpu-thermal", "temp_c": 71.5, "passive_c": 75.0}]
    freqs = cpu_frequencies(tmp_path / "cpu")
    assert freqs == [{"cpu": 0, "cur_khz": 1500000, "max_khz": 1000000, "hw_max_khz": 1800000}]
    assert is_throttled({"thermal": zones})          # within 5 C of the passive trip point
    assert is_throttled({"cpufreq": freqs})          # clock capped below the hardware maximum


@pytest.mark.parametrize("snapshot, throttled", [
    ({"throttled_raw": "throttled=0x0"}, False),
    ({"throttled_raw": "throttled=0x50000"}, False),  # happened earlier since boot, not now
    ({"throttled_raw": "throttled=0x4"}, True),
    ({"thermal": [{"name": "t", "temp_c": 50.0, "passive_c": 80.0}]}, False),
    ({"cpufreq": [{"cpu": 0, "cur_khz": 1, "max_khz": 1800000, "hw_max_khz": 1800000}]}, False),
])
def test_throttle_detection(snapshot, throttled):
    assert is_throttled(snapshot) is throttled


def test_result_flags():
    hot = {"throttled_raw": "throttled=0x4"}
    assert result_flags({}, {}, 0.01) == []
    assert result_flags({}, hot, 0.01) == ["throttled"]
    assert result_flags({}, {}, 0.25) == ["noisy"]


def _event(cat, name, ts, dur, **args):
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "args": args}


def test_parse_ort_profile_drops_warmup_runs():
    events = []
    for run, (conv, relu) in enumerate([(900, 900), (100, 50), (300, 50)]):
        t = run * 10_000
        events.append(_event("Session", "model_run", t, 2000))
        events.append(_event("Node", "conv_kernel_time", t + 10, conv, op_name="Conv", activation_size="10",
                             parameter_size="20", output_size="30",
                             output_type_shape=[{"float": [1, 8, 4, 4]}], provider="CPUExecutionProvider"))
        events.append(_event("Node", "relu_kernel_time", t + 20 + conv, relu, op_name="Relu"))
        events.append(_event("Node", "conv_fence_before", t + 5, 1, op_name="Conv"))
    rows, total_ms, runs = parse_ort_profile(events, skip_runs=1)
    assert runs == 2 and total_ms == pytest.approx(2.0)
    conv, relu = rows
    assert conv["name"] == "conv" and conv["time_ms"] == pytest.approx(0.2)
    assert conv["percent"] == pytest.approx(80.0) and relu["percent"] == pytest.approx(20.0)
    assert conv["memory_bytes"] == 60 and conv["output_shapes"] == ["float[1,8,4,4]"]
    with pytest.raises(JobError):
        parse_ort_profile(events, skip_runs=3)


def test_ort_trace_keeps_the_events_and_caps_measured_runs():
    events = [_event("Session", "session_initialization", 0, 500)]
    for run in range(4):
        t = 1000 + run * 10_000
        events += [_event("Session", "model_run", t, 2000), _event("Node", "conv_kernel_time", t + 10, 900)]
    trace = ort_trace(events, skip_runs=2, max_runs=1, meta={"backend": "onnxruntime"})
    kept = trace["traceEvents"]
    assert kept[0] == {"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "onnxruntime"}}
    runs = [e["args"] for e in kept if e["name"] == "model_run"]
    assert runs == [{"phase": "first", "iteration": -2}, {"phase": "warmup", "iteration": -1},
                    {"phase": "measured", "iteration": 0}]           # the 4th run is over max_runs
    assert sum(e["name"] == "conv_kernel_time" for e in kept) == 3 and kept[1]["name"] == "session_initialization"
    assert trace["otherData"] == {"backend": "onnxruntime", "runs_profiled": 2, "runs_in_trace": 1,
                                  "skipped_runs": 2, "synthesised": False}
