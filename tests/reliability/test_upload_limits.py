"""Issue (D2, D3): 72 uploads that sent only a header took every server thread, so health, GetInfo and
Cancel timed out; and 20 concurrent uploads under a 1 MiB cache cap left 20 MB in cache/tmp. Now uploads
count against --max-uploads, a stalled one is cancelled after --upload-idle-s, and uploads in progress
reserve their size against the cap."""

from __future__ import annotations

import hashlib
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import agent_pb2 as pb
from tests.reliability.conftest import wait_until


def _header_then_stall(release: threading.Event, size: int = 1000):
    yield pb.UploadChunk(header=pb.UploadHeader(digest=hashlib.sha256(b"never").hexdigest(), size_bytes=size))
    release.wait(60)


def _upload_in_thread(client, chunks, outcomes: list) -> threading.Thread:
    def go() -> None:
        try:
            client.stub.UploadModel(chunks, timeout=90, metadata=client._metadata)
            outcomes.append("ok")
        except grpc.RpcError as exc:
            outcomes.append((exc.code(), exc.details()))

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_stalled_uploads_never_make_the_agent_unreachable(start_agent):
    client, agent = start_agent("--max-jobs", "4", "--max-uploads", "4", "--upload-idle-s", "3")
    release, outcomes = threading.Event(), []
    threads = [_upload_in_thread(client, _header_then_stall(release), outcomes) for _ in range(4 + 4 + 8 + 4)]
    try:
        # the ones beyond --max-uploads are refused at once, naming the flag
        assert wait_until(lambda: len(outcomes) >= 16, 30), outcomes
        busy = [o for o in outcomes if o != "ok" and o[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(busy) == 16 and all("--max-uploads" in details for _, details in busy)
        # while 4 stall, every other call answers within 1 s
        health = health_pb2_grpc.HealthStub(client.channel)
        for call in (lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1),
                     lambda: client.stub.GetInfo(pb.GetInfoRequest(), timeout=1, metadata=client._metadata),
                     lambda: client.stub.Cancel(pb.CancelRequest(job_id="nobody"), timeout=1,
                                                metadata=client._metadata)):
            started = time.monotonic()
            call()
            assert time.monotonic() - started < 1
        # the stalled ones are cancelled after --upload-idle-s, with one sentence
        assert wait_until(lambda: len(outcomes) == 20, 30), outcomes
        stalled = [o for o in outcomes[16:]]
        assert all(code == grpc.StatusCode.INVALID_ARGUMENT and "sent nothing for 3 s (farm-agent --upload-idle-s)" in details
                   for code, details in stalled), stalled
    finally:
        release.set()
        for t in threads:
            t.join(30)
    assert "Traceback" not in agent.log_path.read_text()


def _upload_bytes(data: bytes):
    yield pb.UploadChunk(header=pb.UploadHeader(digest=hashlib.sha256(data).hexdigest(), size_bytes=len(data)))
    for i in range(0, len(data), 64 * 1024):
        yield pb.UploadChunk(data=data[i:i + 64 * 1024])


def _disk_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file())


def test_the_cache_cap_holds_under_concurrent_uploads(start_agent, tmp_path):
    client, agent = start_agent("--cache-max-mb", "1", "--max-uploads", "32")
    cap, size = 2**20, 2**20 - 1
    tmp, peak, done = agent.cache_dir / "tmp", [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _disk_bytes(tmp))
            done.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outcomes: list = []
    threads = [_upload_in_thread(client, _upload_bytes(bytes([i]) * size), outcomes) for i in range(20)]
    for t in threads:
        t.join(120)
    done.set()
    sampler.join(10)
    assert len(outcomes) == 20 and "ok" in outcomes
    refused = [o for o in outcomes if o != "ok"]
    assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED and "uploads in progress hold" in details
               for code, details in refused), refused
    assert peak[0] <= cap                                         # never more in flight than the cap
    assert client.info().cache_bytes <= cap
    assert "Traceback" not in agent.log_path.read_text()


def test_an_upload_under_the_cap_still_works(start_agent, conv_onnx):
    client, _ = start_agent("--cache-max-mb", "1", "--max-uploads", "1")
    assert client.ensure_model(conv_onnx).uploaded
