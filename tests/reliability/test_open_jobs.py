"""Issue: 16 open Run streams took every server thread and the agent looked unreachable. Now 32 open
jobs (1 running, 31 queued) leave health, GetInfo and Cancel answering within a second, and the 33rd job
is refused with RESOURCE_EXHAUSTED naming --max-jobs."""

from __future__ import annotations

import time

import pytest

from controller.errors import DeviceError
from protos import agent_pb2 as pb
from tests.reliability.conftest import LONG, Streams, wait_until


@pytest.mark.timeout(300)
def test_32_open_jobs_leave_the_agent_reachable(start_agent, conv_onnx):
    client, _ = start_agent("--max-jobs", "32")
    digest = client.ensure_model(conv_onnx).digest
    streams = Streams(client)
    for i in range(32):
        streams.open(f"hang-{i}", pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=LONG))
    try:
        assert wait_until(lambda: all(streams.first_event(f"hang-{i}") for i in range(32)), 60)
        for _ in range(5):
            started = time.monotonic()
            assert client.health(timeout=1.0)
            info = client.info()
            assert time.monotonic() - started < 1.0
        assert info.queue_length == 32
        with pytest.raises(DeviceError, match="already holds 32 open jobs .*--max-jobs"):
            list(client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=LONG)))
    finally:
        # the queued ones first: cancelling the running job first would let the next one start
        running = [i for i in range(32) if any(e.WhichOneof("event") == "started" for e in streams.events[f"hang-{i}"])]
        order = [i for i in range(32) if i not in running] + running
        started = time.monotonic()
        states = [client.cancel(f"hang-{i}").state for i in order]
        assert time.monotonic() - started < 32 * 1.0
        streams.join(60)
    assert states.count("running") == 1 and states.count("queued") == 31
    assert all(pb.ErrorCode.Name(streams.events[f"hang-{i}"][-1].error.code) == "CANCELLED" for i in range(32))
    assert wait_until(lambda: client.info().queue_length == 0, 30)
