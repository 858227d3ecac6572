"""AgentClient: the controller's side of agent.proto, with deadlines and readable errors."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controller.errors import AgentUnavailable, DeviceError
from core.paths import printable
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20           # 1 MiB per upload message, far under gRPC's 4 MB default
INFO_DEADLINE_S = 10.0
RUN_DEADLINE_S = 6 * 3600.0
MAX_MESSAGE_BYTES = 256 * 2**20


def file_digest(path: Path) -> str:
    """sha256 hex of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class TLSFiles:
    """PEM bytes for mutual TLS: the farm CA, and this side's certificate and private key."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def read(cls, ca: str | Path, cert: str | Path, key: str | Path) -> TLSFiles:
        """Read the three files; a missing one is a DeviceError naming it and how to make it."""
        from agent.auth import PemFileError, read_pem_files

        try:
            return cls(*read_pem_files([("CA certificate", ca), ("certificate", cert), ("private key", key)]))
        except PemFileError as exc:
            raise DeviceError(f"cannot read the TLS {exc.what} '{exc.path}' ({exc.reason}); make it with "
                              "`farmctl ca init` / `farmctl ca issue NAME` or fix the path") from None


def tls_from_env() -> TLSFiles | None:
    """EDGEFARM_TLS_CA / _CERT / _KEY, when all three are set."""
    paths = [os.environ.get(f"EDGEFARM_TLS_{k}") for k in ("CA", "CERT", "KEY")]
    return TLSFiles.read(*paths) if all(paths) else None


@dataclass
class UploadOutcome:
    """What ensure_model did: the digest, and how many model bytes went over the wire."""

    digest: str
    size_bytes: int
    bytes_sent: int
    uploaded: bool


class AgentClient:
    """A connection to one farm-agent."""

    def __init__(self, address: str, token: str | None = None, name: str | None = None,
                 tls: TLSFiles | None = None) -> None:
        self.address = address
        self.name = name or address
        self.tls = tls
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key,
                                                 certificate_chain=tls.cert)
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb_grpc.AgentStub(self.channel)
        self.bytes_sent = 0
        self.last_info: pb.DeviceInfo | None = None    # the latest GetInfo answer (the scheduler reads it)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _error(self, exc: grpc.RpcError, what: str) -> DeviceError:
        code, details = exc.code(), exc.details() or ""
        low = details.lower()
        if code == grpc.StatusCode.UNAVAILABLE and ("ssl" in low or "handshake" in low or "tls" in low
                                                     or "certificate" in low):
            how = ("this client has a certificate, so the agent may be running without TLS or trust another CA"
                   if self.tls else "the agent requires mutual TLS: give this device `tls:` (ca, cert, key from "
                   "`farmctl ca`) in inventory.yaml or set EDGEFARM_TLS_CA/_CERT/_KEY")
            return DeviceError(f"farm-agent '{self.name}' at {self.address} refused the TLS handshake "
                               f"({details.splitlines()[0][:160]}); {how}")
        if code == grpc.StatusCode.UNAVAILABLE and _listening(self.address):
            return AgentUnavailable(
                f"farm-agent '{self.name}' at {self.address} accepts connections but the gRPC session failed "
                f"({details.splitlines()[0][:200]}); if it serves mutual TLS, this client needs its certificate "
                "(`tls:` in inventory.yaml or EDGEFARM_TLS_CA/_CERT/_KEY); if not, check that the port is the "
                "agent's and not another program's")
        if code == grpc.StatusCode.UNAVAILABLE:
            return AgentUnavailable(
                f"cannot reach farm-agent '{self.name}' at {self.address} ({details.splitlines()[0][:200]}); "
                f"start it there with `farm-agent serve --port {self.address.rsplit(':', 1)[-1]}` or fix the "
                "address in inventory.yaml")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return DeviceError(f"farm-agent '{self.name}' refused {what}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return AgentUnavailable(f"farm-agent '{self.name}' at {self.address} did not answer {what} in time; "
                               "check the device is up and not overloaded")
        return DeviceError(f"farm-agent '{self.name}' rejected {what}: {details} ({code.name})")

    def wait_ready(self, timeout: float = 30.0, wait_for_port: bool = True) -> None:
        """Check the agent's health service says SERVING; with wait_for_port, wait for the port to open
        (for an agent just started), else fail at once when nothing listens."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout,
                               wait_for_ready=wait_for_port)
        except grpc.RpcError as exc:
            raise self._error(exc, "the health check") from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise DeviceError(f"farm-agent '{self.name}' is not serving (health status {reply.status})")

    def health(self, timeout: float = 5.0) -> bool:
        """True if the agent answers SERVING now."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout).status == \
                health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def info(self, timeout: float = INFO_DEADLINE_S) -> pb.DeviceInfo:
        """GetInfo (kept in last_info)."""
        try:
            self.last_info = self.stub.GetInfo(pb.GetInfoRequest(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc, "GetInfo") from None
        return self.last_info

    def missing(self, digests: list[str]) -> list[str]:
        """Which digests the agent lacks."""
        try:
            return list(self.stub.MissingModels(pb.MissingModelsRequest(digests=digests),
                                                timeout=INFO_DEADLINE_S, metadata=self._metadata).missing)
        except grpc.RpcError as exc:
            raise self._error(exc, "MissingModels") from None

    def upload(self, path: Path, digest: str | None = None, size: int | None = None) -> pb.UploadReply:
        """Send a file in chunks with its digest and size (both may be given to test the agent)."""
        path = Path(path)
        digest = digest or file_digest(path)
        size = path.stat().st_size if size is None else size
        sent = 0

        def chunks() -> Iterator[pb.UploadChunk]:
            nonlocal sent
            yield pb.UploadChunk(header=pb.UploadHeader(digest=digest, size_bytes=size, filename=printable(path.name)))
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(CHUNK_BYTES), b""):
                    sent += len(block)
                    yield pb.UploadChunk(data=block)

        deadline = 60.0 + path.stat().st_size / 1e6  # 1 MB/s floor
        try:
            reply = self.stub.UploadModel(chunks(), timeout=deadline, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc, f"the upload of {path.name}") from None
        finally:
            self.bytes_sent += sent
        return reply

    def ensure_model(self, path: Path) -> UploadOutcome:
        """Make sure the agent holds the model; sends its bytes only when the agent lacks it."""
        path = Path(path)
        digest = file_digest(path)
        size = path.stat().st_size
        if digest not in self.missing([digest]):
            return UploadOutcome(digest, size, 0, False)
        before = self.bytes_sent
        self.upload(path, digest, size)
        return UploadOutcome(digest, size, self.bytes_sent - before, True)

    def run(self, request: pb.RunRequest, on_event: Callable[[pb.RunEvent], None] | None = None,
            timeout: float = RUN_DEADLINE_S) -> Iterator[pb.RunEvent]:
        """Run a job and yield its events (the job id is filled in if empty)."""
        if not request.job_id:
            request.job_id = uuid.uuid4().hex
        try:
            for event in self.stub.Run(request, timeout=timeout, metadata=self._metadata):
                if on_event:
                    on_event(event)
                yield event
        except grpc.RpcError as exc:
            raise self._error(exc, "the job") from None

    def cancel(self, job_id: str) -> pb.CancelReply:
        """Cancel a job by id."""
        try:
            return self.stub.Cancel(pb.CancelRequest(job_id=job_id), timeout=INFO_DEADLINE_S,
                                    metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc, "Cancel") from None


def token_from_env() -> str | None:
    """EDGEFARM_TOKEN, if set."""
    return os.environ.get("EDGEFARM_TOKEN") or None


def _listening(address: str) -> bool:
    """Whether something accepts TCP connections at HOST:PORT (an agent up, but a session that failed)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False
