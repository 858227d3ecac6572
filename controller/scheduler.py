"""Scheduler: jobs -> agents. Each device gets one worker thread, so a device measures one job at a
time (in submission order) while different devices work in parallel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from controller.client import AgentClient
from controller.errors import DeviceError

log = logging.getLogger(__name__)

JobFn = Callable[[AgentClient], Any]


class Scheduler:
    """`submit(device, label, fn)` runs `fn(client)` on that device's worker; `counts()` says how many
    jobs are done, running and waiting, for a progress bar."""

    def __init__(self, clients: dict[str, AgentClient]) -> None:
        self.clients = clients
        self._pools = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"device-{name}")
                       for name in clients}
        self._lock = threading.Lock()
        self._done = self._waiting = 0
        self.running: dict[str, str] = {}  # device -> label of the job it is running

    def submit(self, device: str, label: str, fn: JobFn) -> Future:
        """Queue a job on one device; the future holds fn's return value (or its exception)."""
        if device not in self._pools:
            raise DeviceError(f"the scheduler has no device '{device}'; it has: {', '.join(self._pools)}")
        with self._lock:
            self._waiting += 1

        def job() -> Any:
            with self._lock:
                self._waiting -= 1
                self.running[device] = label
            try:
                return fn(self.clients[device])
            finally:
                with self._lock:
                    self._done += 1
                    self.running.pop(device, None)

        return self._pools[device].submit(job)

    def counts(self) -> tuple[int, int, int]:
        """(done, running, waiting) jobs."""
        with self._lock:
            return self._done, len(self.running), self._waiting

    def shutdown(self, cancel_waiting: bool = True) -> None:
        """Stop the workers; jobs not yet started are dropped when cancel_waiting."""
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=cancel_waiting)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
