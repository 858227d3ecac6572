"""Admission of uploads: at most --max-uploads at once (each holds a server thread for its whole life, so
uncounted uploads could take every thread and leave health, GetInfo and Cancel unanswered), and an upload
that sends nothing for --upload-idle-s is ended with one sentence (a client that sends a header and stalls)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from agent.errors import AgentError, UploadRejected

_END = object()


class UploadsBusy(AgentError):
    """Every upload slot is taken."""


class UploadGate:
    """Upload slots, and messages read with an idle timeout."""

    def __init__(self, limit: int = 8, idle_s: float = 30.0) -> None:
        self.limit, self.idle_s = limit, idle_s
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """A slot for one upload while it lasts, or UploadsBusy."""
        if not self._slots.acquire(blocking=False):
            raise UploadsBusy(f"this agent is already receiving {self.limit} uploads (its --max-uploads); "
                              "retry when they finish, or start farm-agent with a larger --max-uploads")
        try:
            yield
        finally:
            self._slots.release()

    def messages(self, request_iterator: Iterator) -> Iterator:
        """The upload's messages; UploadRejected when none comes for idle_s seconds. A reader thread takes
        them from gRPC (whose iterator cannot time out); it ends when the call ends, which the handler's
        abort brings about."""
        inbox: queue.Queue = queue.Queue(maxsize=4)

        def read() -> None:
            try:
                for message in request_iterator:
                    inbox.put(message)
            except grpc.RpcError:      # the call ended (the client left, or we aborted it)
                pass
            except Exception as exc:   # noqa: BLE001 - handed to the handler, which reports it
                inbox.put(exc)
            inbox.put(_END)

        threading.Thread(target=read, name="upload-reader", daemon=True).start()
        while True:
            try:
                message = inbox.get(timeout=self.idle_s)
            except queue.Empty:
                raise UploadRejected(f"the upload sent nothing for {self.idle_s:g} s (farm-agent --upload-idle-s) "
                                     "and was ended; send it again") from None
            if message is _END:
                return
            if isinstance(message, Exception):
                raise message
            yield message
