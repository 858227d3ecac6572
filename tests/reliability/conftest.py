"""Shared by the reliability suite: real agent processes, bounded in count and time, no sleeps."""

from __future__ import annotations

import threading
import time

from protos import agent_pb2 as pb

LONG = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=120, max_seconds=300, threads=1)


def wait_until(predicate, timeout: float) -> bool:
    """Poll a condition (a health check of its own kind) until it holds or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Streams:
    """Open Run streams in threads, each recording its events."""

    def __init__(self, client) -> None:
        self.client = client
        self.events: dict[str, list] = {}
        self.errors: dict[str, Exception] = {}
        self.threads: list[threading.Thread] = []

    def open(self, job_id: str, request: pb.RunRequest) -> None:
        self.events[job_id] = []
        request.job_id = job_id

        def consume() -> None:
            try:
                for event in self.client.run(request):
                    self.events[job_id].append(event)
            except Exception as exc:   # the test reads it
                self.errors[job_id] = exc

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        self.threads.append(t)

    def first_event(self, job_id: str) -> bool:
        return bool(self.events[job_id])

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
