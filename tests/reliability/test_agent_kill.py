"""Issue: SIGKILL of the agent left its runner alive, burning a core. Now the runner dies with it, and
the next agent on that cache removes what the killed one left."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from controller.fleet.local import LocalAgent
from protos import agent_pb2 as pb
from tests.reliability.conftest import LONG, Streams, wait_until


@pytest.mark.timeout(180)
def test_sigkill_of_the_agent_leaves_no_runner(tmp_path, conv_onnx):
    agent = LocalAgent(cache_dir=tmp_path / "cache", name="doomed")
    client = agent.start()
    try:
        digest = client.ensure_model(conv_onnx).digest
        streams = Streams(client)
        streams.open("victim", pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=LONG))
        assert wait_until(lambda: any(e.WhichOneof("event") == "started" for e in streams.events["victim"]), 60)
        runner = next(e.started.pid for e in streams.events["victim"] if e.WhichOneof("event") == "started")
        assert psutil.pid_exists(runner)
        assert list((tmp_path / "cache" / "jobs").glob("job-*"))
        os.kill(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(30)
        assert wait_until(lambda: not psutil.pid_exists(runner) or psutil.Process(runner).status() ==
                          psutil.STATUS_ZOMBIE, 2.0), "the runner outlived its agent"
    finally:
        agent.stop()
    # a new agent on the same cache removes the killed agent's job folder
    again = LocalAgent(cache_dir=tmp_path / "cache", name="successor")
    again.start()
    try:
        assert not list((tmp_path / "cache" / "jobs").glob("job-*"))
    finally:
        again.stop()
