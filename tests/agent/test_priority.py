"""Priorities on a real agent's queue: higher first, first come first served within one priority, queue
positions recomputed when a higher job overtakes, and aging so that a low job never starves."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from controller.cli.main import build_parser
from controller.errors import UsageError
from controller.measure.api import bench
from controller.measure.settings import MeasureSettings
from protos import agent_pb2 as pb

HOLD = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=300, max_seconds=600, threads=1)
SHORT = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=0.0, max_seconds=5, threads=1)
WAIT_S = 60


class Streams:
    """Run streams consumed in threads, every event kept, with a condition to wait on."""

    def __init__(self, client, digest: str) -> None:
        self.client, self.digest = client, digest
        self.cond = threading.Condition()
        self.events: dict[str, list[pb.RunEvent]] = defaultdict(list)
        self.threads: list[threading.Thread] = []

    def open(self, job_id: str, priority: int, settings: pb.MeasureSettings = SHORT) -> None:
        req = pb.RunRequest(job_id=job_id, kind=pb.BENCHMARK, model_digest=self.digest, settings=settings,
                            priority=priority)
        t = threading.Thread(target=self._consume, args=(job_id, req), daemon=True)
        t.start()
        self.threads.append(t)

    def _consume(self, job_id: str, req: pb.RunRequest) -> None:
        for event in self.client.run(req):
            with self.cond:
                self.events[job_id].append(event)
                self.cond.notify_all()

    def wait(self, predicate) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, WAIT_S)

    def started(self, job_id: str) -> bool:
        return any(e.WhichOneof("event") == "started" for e in self.events[job_id])

    def queued(self, job_id: str) -> list[tuple[int, str]]:
        return [(e.queued.position, pb.Priority.Name(e.queued.priority))
                for e in self.events[job_id] if e.WhichOneof("event") == "queued"]

    def position(self, job_id: str) -> int | None:
        q = self.queued(job_id)
        return q[-1][0] if q else None

    def join(self) -> None:
        for t in self.threads:
            t.join(WAIT_S)
        assert not any(t.is_alive() for t in self.threads)

    def start_order(self, job_ids: list[str]) -> list[str]:
        """The jobs in the order the agent started them (its telemetry stamp just before each runner)."""
        for job_id in job_ids:
            assert self.events[job_id][-1].WhichOneof("event") == "result", self.events[job_id][-1]
        return sorted(job_ids, key=lambda j: self.events[j][-1].result.telemetry_before.timestamp)


def _hold(streams: Streams) -> None:
    streams.open("hold", pb.PRIORITY_NORMAL, HOLD)
    assert streams.wait(lambda: streams.started("hold"))


def test_higher_first_fifo_within_one_and_positions_recomputed(start_agent, conv_onnx):
    client, _ = start_agent("--priority-aging-s", "3600")   # no aging within this test
    streams = Streams(client, client.ensure_model(conv_onnx).digest)
    _hold(streams)
    # each arrival, then where every waiting job stands once the agent has told it
    arrivals = [("low", pb.PRIORITY_LOW, {"low": 1}),
                ("normal-1", pb.PRIORITY_NORMAL, {"normal-1": 1, "low": 2}),
                ("high", pb.PRIORITY_HIGH, {"high": 1, "normal-1": 2, "low": 3}),
                ("normal-2", pb.PRIORITY_NORMAL, {"high": 1, "normal-1": 2, "normal-2": 3, "low": 4})]
    for job_id, priority, expected in arrivals:
        streams.open(job_id, priority)
        assert streams.wait(lambda: all(streams.position(j) == p for j, p in expected.items())), \
            {j: streams.queued(j) for j in expected}
    assert client.info().queue_length == 5
    assert streams.queued("low") == [(1, "PRIORITY_LOW"), (2, "PRIORITY_LOW"), (3, "PRIORITY_LOW"),
                                     (4, "PRIORITY_LOW")]
    assert streams.queued("normal-1") == [(1, "PRIORITY_NORMAL"), (2, "PRIORITY_NORMAL")]
    assert streams.queued("high") == [(1, "PRIORITY_HIGH")]
    assert client.cancel("hold").state == "running"
    streams.join()
    assert streams.start_order(["low", "normal-1", "high", "normal-2"]) == ["high", "normal-1", "normal-2", "low"]
    # low moved up as the ones before it started (a step may pass between two of its wake-ups)
    after = [p for p, _ in streams.queued("low")][4:]
    assert after and after[-1] == 1 and after == sorted(after, reverse=True) and max(after) <= 3
    assert client.info().queue_length == 0


def test_a_waiting_low_job_ages_past_a_newer_normal_one(start_agent, conv_onnx):
    client, _ = start_agent("--priority-aging-s", "1")
    streams = Streams(client, client.ensure_model(conv_onnx).digest)
    _hold(streams)
    streams.open("low", pb.PRIORITY_LOW)
    # the agent says when the job moved up a level: it has waited past the aging interval
    assert streams.wait(lambda: ("PRIORITY_NORMAL" in [p for _, p in streams.queued("low")]))
    assert streams.queued("low")[0] == (1, "PRIORITY_LOW")
    streams.open("normal", pb.PRIORITY_NORMAL)
    assert streams.wait(lambda: streams.position("normal") == 2)   # behind the older, aged low job
    assert streams.position("low") == 1
    assert client.cancel("hold").state == "running"
    streams.join()
    assert streams.start_order(["low", "normal"]) == ["low", "normal"]


def test_the_python_api_and_farmctl_send_the_priority(start_agent, conv_onnx, tmp_path):
    client, _ = start_agent()
    streams = Streams(client, client.ensure_model(conv_onnx).digest)
    _hold(streams)
    seen: list[pb.RunEvent] = []
    was_queued = threading.Event()

    def progress(_device: str, event: pb.RunEvent) -> None:
        seen.append(event)
        if event.WhichOneof("event") == "queued":
            was_queued.set()

    settings = MeasureSettings(warmup=0, min_iterations=1, min_seconds=0.0, threads=1, priority="high")
    done = threading.Thread(target=lambda: bench(conv_onnx, client, settings, tmp_path / "r.db", progress=progress),
                            daemon=True)
    done.start()
    assert was_queued.wait(WAIT_S)
    queued = next(e for e in seen if e.WhichOneof("event") == "queued")
    assert pb.Priority.Name(queued.queued.priority) == "PRIORITY_HIGH"
    client.cancel("hold")
    done.join(WAIT_S)
    assert seen[-1].WhichOneof("event") == "result"
    # the flag, on every command that measures; not part of what is stored or of a run's identity
    parser = build_parser()
    for argv in (["bench"], ["profile"], ["optimize"], ["nas"]):
        assert parser.parse_args(argv + ["--priority", "low"]).priority == "low"
        assert parser.parse_args(argv).priority == "normal"
    assert "priority" not in settings.as_dict()
    assert settings.key(1) == MeasureSettings(warmup=0, min_iterations=1, min_seconds=0.0, threads=1).key(1)
    with pytest.raises(UsageError, match="'urgent' is not one of low, normal, high"):
        MeasureSettings(priority="urgent")


def test_aging_must_be_positive():
    from agent.server import build_parser as agent_parser

    with pytest.raises(SystemExit):
        agent_parser().parse_args(["serve", "--priority-aging-s", "0"])
    assert agent_parser().parse_args(["serve"]).priority_aging_s == 60.0
