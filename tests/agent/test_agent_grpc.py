"""The agent as a real process over real gRPC: uploads, jobs, limits, bad input, auth."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zlib
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from controller.errors import DeviceError
from controller.fleet.client import AgentClient, file_digest
from protos import agent_pb2 as pb
from protos.codec import array_to_tensor, tensor_to_array
from tests import models

FAST = pb.MeasureSettings(warmup=2, min_iterations=5, min_seconds=0.0, max_seconds=5.0, threads=1)


def run_events(client: AgentClient, path: Path, kind=pb.BENCHMARK, settings=FAST, **extra) -> list[pb.RunEvent]:
    digest = client.ensure_model(path).digest
    return list(client.run(pb.RunRequest(kind=kind, model_digest=digest, backend="onnxruntime",
                                         settings=settings, **extra)))


def final_error(events: list[pb.RunEvent]) -> pb.Error:
    assert events[-1].WhichOneof("event") == "error", events[-1]
    return events[-1].error


def cache_files(agent) -> tuple[list[str], list[str]]:
    return (sorted(p.name for p in (agent.cache_dir / "models").iterdir()),
            sorted(p.name for p in (agent.cache_dir / "tmp").iterdir()))


def test_get_info_describes_the_device(shared_agent):
    client, _ = shared_agent
    info = client.info()
    assert info.name == "shared"
    assert info.device_class == "x86"
    assert info.cores >= 1 and info.memory_bytes > 0
    names = [b.name for b in info.backends]
    assert names[0] == "onnxruntime" and set(names) <= {"onnxruntime", "tflite", "tensorrt"}
    assert info.backends[0].version == ort.__version__
    assert len(info.fingerprint) == 16 and info.agent_version


def test_second_upload_sends_no_model_bytes(shared_agent, conv_onnx):
    client, _ = shared_agent
    first = client.ensure_model(conv_onnx)
    second = client.ensure_model(conv_onnx)
    assert first.digest == second.digest == file_digest(conv_onnx)
    assert second.bytes_sent == 0 and not second.uploaded
    assert client.missing([first.digest]) == []


def test_benchmark_streams_started_progress_and_result(shared_agent, conv_onnx):
    client, _ = shared_agent
    events = run_events(client, conv_onnx, settings=pb.MeasureSettings(
        warmup=3, min_iterations=40, min_seconds=0.05, max_seconds=10, threads=1))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "result" and "progress" in kinds
    r = events[-1].result
    lat = r.latency
    assert lat.count >= 40 and r.measured_seconds >= 0.05
    assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    assert r.threads == 1 and r.backend == "onnxruntime" and r.warmup == 3
    assert r.load_ms > 0 and r.first_inference_ms > 0 and r.peak_memory_bytes > 10 * 2**20
    assert list(r.input_shapes["x"].dims) == [1, 3, 32, 32]
    assert r.telemetry_before.timestamp <= r.telemetry_after.timestamp


def test_profile_returns_layer_rows(shared_agent, conv_onnx):
    client, _ = shared_agent
    events = run_events(client, conv_onnx, kind=pb.PROFILE, settings=pb.MeasureSettings(
        warmup=2, profile_iterations=7, threads=1))
    layers = next(e.layers for e in events if e.WhichOneof("event") == "layers")
    assert layers.iterations == 7
    ops = {r.op_type for r in layers.rows}
    assert "Conv" in ops and "Gemm" in ops
    assert abs(sum(r.percent for r in layers.rows) - 100.0) < 1e-6
    conv = next(r for r in layers.rows if r.op_type == "Conv")
    assert conv.time_ms > 0 and conv.memory_bytes > 0 and conv.output_shapes[0].endswith(",32,32]")
    assert "profiling_on" in events[-1].result.flags
    # ORT's own profile comes back as a Chrome trace (zlib-compressed JSON): first run + 2 warm-up + 7 measured
    trace = json.loads(zlib.decompress(layers.trace_json_zlib))
    runs = [e for e in trace["traceEvents"] if e["name"] == "model_run"]
    assert [e["args"]["phase"] for e in runs] == ["first", "warmup", "warmup"] + ["measured"] * 7
    assert {e["name"] for e in trace["traceEvents"]} >= {f"{r.name}_kernel_time" for r in layers.rows}


def test_evaluate_returns_the_models_outputs(shared_agent, conv_onnx):
    client, _ = shared_agent
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    events = run_events(client, conv_onnx, kind=pb.EVALUATE, inputs=[array_to_tensor("x", x)])
    outputs = next(e.outputs for e in events if e.WhichOneof("event") == "outputs")
    got = tensor_to_array(outputs.tensors[0])
    want = ort.InferenceSession(str(conv_onnx)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("make, code, words", [
    (lambda d, src: models.random_bytes(d / "random.onnx"), "INVALID_MODEL", "not a valid ONNX model"),
    (lambda d, src: models.truncated(src, d / "truncated.onnx"), "INVALID_MODEL", "truncated"),
    (lambda d, src: models.unknown_op_model(d / "unknown.onnx"), "UNSUPPORTED_OP", "FrobnicateTensor"),
])
def test_malformed_models_end_with_a_clear_error(shared_agent, conv_onnx, tmp_path, make, code, words):
    client, _ = shared_agent
    events = run_events(client, make(tmp_path, conv_onnx))
    err = final_error(events)
    assert pb.ErrorCode.Name(err.code) == code
    assert words in err.message
    assert client.health()


@pytest.mark.parametrize("shapes, words", [
    ({"x": [1, 3, 64, 64]}, "dimension 2 is fixed at 32"),
    ({"x": [1, 3, 32]}, "has 4 dimensions"),
    ({"image": [1, 3, 32, 32]}, "the model's inputs are: x"),
])
def test_wrong_input_shapes_are_refused(shared_agent, conv_onnx, shapes, words):
    client, _ = shared_agent
    settings = pb.MeasureSettings(warmup=1, min_iterations=1, min_seconds=0,
                                  input_shapes={k: pb.Shape(dims=v) for k, v in shapes.items()})
    err = final_error(run_events(client, conv_onnx, settings=settings))
    assert pb.ErrorCode.Name(err.code) == "INVALID_INPUT" and words in err.message


def test_unfixed_dynamic_dimensions_are_named(shared_agent, dynamic_onnx):
    client, _ = shared_agent
    err = final_error(run_events(client, dynamic_onnx))
    assert pb.ErrorCode.Name(err.code) == "INVALID_INPUT"
    assert "batch" in err.message and "side" in err.message and "--input-shape x=N,3,N,N" in err.message
    fixed = pb.MeasureSettings(warmup=1, min_iterations=3, min_seconds=0,
                               input_shapes={"x": pb.Shape(dims=[2, 3, 16, 16])})
    assert run_events(client, dynamic_onnx, settings=fixed)[-1].result.input_shapes["x"].dims == [2, 3, 16, 16]


def test_a_reference_model_is_timed_in_the_same_loop(shared_agent, conv_onnx, model_dir):
    """Drift compensation: one inference of the model, one of the reference, alternately; both come back."""
    client, _ = shared_agent
    big = models.conv_model(model_dir / "big_conv.onnx", size=160)    # 25x the pixels of tiny_conv
    ref_digest = client.ensure_model(big).digest
    events = run_events(client, conv_onnx, reference_digest=ref_digest, settings=pb.MeasureSettings(
        warmup=2, min_iterations=30, min_seconds=0.0, max_seconds=10, threads=1))
    r = events[-1].result
    assert r.latency.count == r.reference_latency.count == 30
    assert r.reference_latency.p50_ms > 3 * r.latency.p50_ms     # the reference's own times, not the model's
    assert list(r.input_shapes["x"].dims) == [1, 3, 32, 32]       # the model's shapes; the reference has its own
    assert not run_events(client, conv_onnx)[-1].result.HasField("reference_latency")


@pytest.mark.parametrize("case, code, words", [
    ("absent", "MODEL_NOT_FOUND", "reference model 000"),
    ("profile", "INVALID_INPUT", "a reference model is timed alongside a BENCHMARK job only"),
    ("dynamic", "INVALID_INPUT", "the reference model: "),
])
def test_a_bad_reference_is_a_clear_error(shared_agent, conv_onnx, dynamic_onnx, case, code, words):
    client, _ = shared_agent
    digest = {"absent": "0" * 64, "profile": client.ensure_model(conv_onnx).digest,
              "dynamic": client.ensure_model(dynamic_onnx).digest}[case]
    events = run_events(client, conv_onnx, kind=pb.PROFILE if case == "profile" else pb.BENCHMARK,
                        reference_digest=digest)
    err = final_error(events)
    assert pb.ErrorCode.Name(err.code) == code and words in err.message, err.message


def test_unknown_digest_is_model_not_found(shared_agent):
    client, _ = shared_agent
    events = list(client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest="0" * 64, settings=FAST)))
    assert pb.ErrorCode.Name(final_error(events).code) == "MODEL_NOT_FOUND"


def test_digest_mismatch_is_refused_and_leaves_nothing(start_agent, conv_onnx):
    client, agent = start_agent()
    with pytest.raises(DeviceError, match="digest mismatch"):
        client.upload(conv_onnx, digest="ab" * 32)
    assert cache_files(agent) == ([], [])
    with pytest.raises(DeviceError, match="not a model digest"):
        client.upload(conv_onnx, digest="../../etc/passwd")
    with pytest.raises(DeviceError, match="cut short"):
        client.upload(conv_onnx, size=conv_onnx.stat().st_size + 10)
    assert cache_files(agent) == ([], [])
    assert client.health()


def test_upload_over_the_cache_cap_is_refused(start_agent, model_dir, conv_onnx):
    client, agent = start_agent("--cache-max-mb", "0.01")
    big = models.conv_model(model_dir / "big.onnx", size=32)
    big.write_bytes(big.read_bytes() + b"\0" * 20000)  # padding past the 10 KiB cap
    with pytest.raises(DeviceError, match="over this agent's cache cap"):
        client.upload(big)
    assert cache_files(agent) == ([], [])
    assert client.health()


def test_cache_evicts_least_recently_used(start_agent, model_dir, conv_onnx):
    size = conv_onnx.stat().st_size
    client, agent = start_agent("--cache-max-mb", str(2.5 * size / 2**20))
    a = models.conv_model(model_dir / "a.onnx", size=20)
    b = models.conv_model(model_dir / "b.onnx", size=24)
    da, db, dc = (client.ensure_model(p).digest for p in (a, b, conv_onnx))
    assert client.missing([da, db, dc]) == [da]


def test_job_past_its_time_limit_is_stopped(shared_agent, conv_onnx):
    client, _ = shared_agent
    slow = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=60, max_seconds=120, threads=1)
    err = final_error(run_events(client, conv_onnx, settings=slow, time_limit_s=1.5))
    assert pb.ErrorCode.Name(err.code) == "TIMEOUT" and "time limit of 1.5 s" in err.message
    assert client.health()


def test_job_past_its_memory_limit_is_stopped(shared_agent, model_dir):
    client, _ = shared_agent
    hog = models.memory_hog_model(model_dir / "hog.onnx", gib=1.5)
    err = final_error(run_events(client, hog, memory_limit_bytes=400 * 2**20))
    assert pb.ErrorCode.Name(err.code) == "OUT_OF_MEMORY" and "memory limit of 400 MiB" in err.message
    assert client.health()


def test_crashed_runner_ends_the_job_and_the_agent_keeps_serving(shared_agent, conv_onnx):
    client, _ = shared_agent
    long = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=60, max_seconds=120, threads=1)
    digest = client.ensure_model(conv_onnx).digest
    events = []
    for event in client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=long)):
        events.append(event)
        if event.WhichOneof("event") == "started":
            os.kill(event.started.pid, signal.SIGSEGV)
    err = final_error(events)
    assert pb.ErrorCode.Name(err.code) == "RUNNER_CRASHED" and "SIGSEGV" in err.message
    assert run_events(client, conv_onnx)[-1].WhichOneof("event") == "result"


def test_one_job_at_a_time_with_queue_positions_and_cancel(shared_agent, conv_onnx):
    client, _ = shared_agent
    digest = client.ensure_model(conv_onnx).digest
    long = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=60, max_seconds=120, threads=1)
    streams: dict[str, list] = {"a": [], "b": [], "c": []}
    seen = {k: threading.Event() for k in ("a_started", "b_queued", "c_queued", "b_started", "c_moved_up")}

    def consume(key: str, job_id: str) -> None:
        req = pb.RunRequest(job_id=job_id, kind=pb.BENCHMARK, model_digest=digest, settings=long)
        for event in client.run(req):
            streams[key].append(event)
            which = event.WhichOneof("event")
            if which in ("started", "queued") and f"{key}_{which}" in seen:
                seen[f"{key}_{which}"].set()
            if key == "c" and which == "queued" and event.queued.position == 1:
                seen["c_moved_up"].set()

    threads = []
    for key in "abc":
        t = threading.Thread(target=consume, args=(key, f"job-{key}"), daemon=True)
        t.start()
        threads.append(t)
        gate = {"a": "a_started", "b": "b_queued", "c": "c_queued"}[key]
        assert seen[gate].wait(30)
    assert streams["b"][0].queued.position == 1
    assert streams["c"][0].queued.position == 2
    assert client.cancel("job-a").state == "running"
    assert seen["b_started"].wait(30) and seen["c_moved_up"].wait(30)
    assert client.cancel("job-c").state == "queued"
    assert client.cancel("job-b").state == "running"
    for t in threads:
        t.join(30)
    assert pb.ErrorCode.Name(final_error(streams["a"]).code) == "CANCELLED"
    assert [e.queued.position for e in streams["c"] if e.WhichOneof("event") == "queued"] == [2, 1]
    assert pb.ErrorCode.Name(final_error(streams["c"]).code) == "CANCELLED"
    assert client.info().queue_length == 0


def test_token_is_required_when_set(start_agent, conv_onnx, tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    _, agent = start_agent("--token-file", str(tmp_path / "token"))
    anonymous = AgentClient(f"127.0.0.1:{agent.port}")
    assert anonymous.health()  # health stays open for supervisors
    with pytest.raises(DeviceError, match="no bearer token was sent"):
        anonymous.info()
    with pytest.raises(DeviceError, match="bearer token is wrong"):
        AgentClient(f"127.0.0.1:{agent.port}", token="guess").ensure_model(conv_onnx)
    assert AgentClient(f"127.0.0.1:{agent.port}", token="s3cret").info().name == "test-agent"


def test_unreachable_agent_is_a_clear_error():
    with socket_port() as port:
        pass
    client = AgentClient(f"127.0.0.1:{port}")
    with pytest.raises(DeviceError, match=r"cannot reach farm-agent .* start it there"):
        client.info()
    with pytest.raises(DeviceError, match="cannot reach"):
        client.wait_ready(timeout=5, wait_for_port=False)


class socket_port:
    """A port that was free a moment ago (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_grpc_status_codes_for_upload_errors(start_agent, conv_onnx):
    _, agent = start_agent()
    from protos import agent_pb2_grpc as pb_grpc

    stub = pb_grpc.AgentStub(grpc.insecure_channel(f"127.0.0.1:{agent.port}"))
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadModel(iter([pb.UploadChunk(data=b"no header")]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadModel(iter([pb.UploadChunk(header=pb.UploadHeader(digest="0" * 64, size_bytes=10**12))]),
                         timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_client_that_hangs_up_cancels_its_job(start_agent, conv_onnx):
    from protos import agent_pb2_grpc as pb_grpc

    client, agent = start_agent()
    digest = client.ensure_model(conv_onnx).digest
    stub = pb_grpc.AgentStub(grpc.insecure_channel(f"127.0.0.1:{agent.port}"))
    long = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=60, max_seconds=120, threads=1)
    call = stub.Run(pb.RunRequest(job_id="gone", kind=pb.BENCHMARK, model_digest=digest, settings=long))
    first = next(call)
    assert first.WhichOneof("event") == "started"
    first_seen = time.time()
    call.cancel()  # the controller died or was interrupted
    # The next job is not stuck behind the abandoned one (which would hold the device for 60 s).
    events = run_events(client, conv_onnx, time_limit_s=30)
    assert all(e.queued.position == 1 for e in events if e.WhichOneof("event") == "queued")
    assert events[-1].WhichOneof("event") == "result"
    assert events[-1].result.telemetry_after.timestamp - first_seen < 30
    import psutil

    assert not psutil.pid_exists(first.started.pid) or \
        psutil.Process(first.started.pid).status() == psutil.STATUS_ZOMBIE


def test_agent_stops_cleanly_on_sigterm_and_kills_its_runner(start_agent, conv_onnx):
    client, agent = start_agent()
    digest = client.ensure_model(conv_onnx).digest
    long = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=60, max_seconds=120, threads=1)
    events = client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=long))
    started = next(events)
    agent.stop()
    assert agent.proc.returncode == 0
    import psutil

    assert not psutil.pid_exists(started.started.pid)


def test_a_reused_job_id_is_refused_without_touching_the_running_job(start_agent, conv_onnx):
    client, _ = start_agent()
    digest = client.ensure_model(conv_onnx).digest
    long = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=60, max_seconds=120, threads=1)
    running = client.run(pb.RunRequest(job_id="same", kind=pb.BENCHMARK, model_digest=digest, settings=long))
    assert next(running).WhichOneof("event") == "started"
    dup = list(client.run(pb.RunRequest(job_id="same", kind=pb.BENCHMARK, model_digest=digest, settings=FAST)))
    assert "already in use" in final_error(dup).message
    assert client.cancel("same").state == "running"  # still running: the refused call did not cancel it
    assert pb.ErrorCode.Name(final_error(list(running)).code) == "CANCELLED"


@pytest.mark.parametrize("job_id", ["../../escape", "a/b", "x" * 65, "id with spaces"])
def test_job_ids_that_could_name_paths_are_refused(shared_agent, conv_onnx, job_id):
    client, agent = shared_agent
    digest = client.ensure_model(conv_onnx).digest
    events = list(client.run(pb.RunRequest(job_id=job_id, kind=pb.BENCHMARK, model_digest=digest, settings=FAST)))
    assert pb.ErrorCode.Name(final_error(events).code) == "INVALID_INPUT"
    assert "is not allowed" in final_error(events).message
    assert not (agent.cache_dir.parent / "escape").exists()
