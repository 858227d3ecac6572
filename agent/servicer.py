"""Thin gRPC servicer: decode the request, call the cache or job manager, map our exceptions to codes."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import grpc
from google.protobuf import json_format

from agent.cache import ModelCache
from agent.errors import AgentError, CacheFull, InvalidDigest, JobError, UploadRejected
from agent.jobs import JobManager, JobSpec
from agent.uploads import UploadGate, UploadsBusy
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from protos.codec import array_to_tensor, tensor_to_array

log = logging.getLogger(__name__)

# The one place where exception types become gRPC status codes.
STATUS_FOR = {
    InvalidDigest: grpc.StatusCode.INVALID_ARGUMENT,
    UploadRejected: grpc.StatusCode.INVALID_ARGUMENT,
    CacheFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UploadsBusy: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _abort(context: grpc.ServicerContext, exc: AgentError) -> None:
    code = next((c for t, c in STATUS_FOR.items() if isinstance(exc, t)), grpc.StatusCode.FAILED_PRECONDITION)
    context.abort(code, str(exc))


_DEFAULTS = JobSpec(kind="", digest="")  # what a request leaves unset
# The wire's priorities and the agent's; UNSPECIFIED (an older client) is normal.
PRIORITY_OF = {pb.PRIORITY_UNSPECIFIED: "normal", pb.PRIORITY_LOW: "low", pb.PRIORITY_NORMAL: "normal",
               pb.PRIORITY_HIGH: "high"}


def spec_from_request(req: pb.RunRequest) -> JobSpec:
    """Decode a RunRequest into the agent's JobSpec."""
    s = req.settings
    try:
        inputs = {t.name: tensor_to_array(t) for t in req.inputs} or None
    except (TypeError, ValueError) as exc:
        raise JobError("INVALID_INPUT", f"an input tensor could not be decoded: {exc}") from exc
    if req.priority not in PRIORITY_OF:
        raise JobError("INVALID_INPUT", f"unknown priority {req.priority} in the request; use PRIORITY_LOW, "
                                        "PRIORITY_NORMAL or PRIORITY_HIGH")
    d = _DEFAULTS
    return JobSpec(
        kind=pb.JobKind.Name(req.kind), digest=req.model_digest, backend=req.backend or d.backend,
        job_id=req.job_id, threads=s.threads, warmup=s.warmup if s.HasField("warmup") else d.warmup,
        min_iterations=s.min_iterations or d.min_iterations,
        min_seconds=s.min_seconds if s.HasField("min_seconds") else d.min_seconds,
        max_seconds=s.max_seconds or d.max_seconds, profile_iterations=s.profile_iterations or d.profile_iterations,
        input_shapes={k: list(v.dims) for k, v in s.input_shapes.items()}, inputs=inputs,
        time_limit_s=req.time_limit_s, memory_limit_bytes=req.memory_limit_bytes,
        reference_digest=req.reference_digest, priority=PRIORITY_OF[req.priority])


def event_to_proto(job_id: str, event: dict) -> pb.RunEvent:
    """Encode an event dict from the job manager as a RunEvent."""
    (kind, body), = event.items()
    if kind == "outputs":
        return pb.RunEvent(job_id=job_id, outputs=pb.Outputs(
            tensors=[array_to_tensor(k, v) for k, v in body.items()]))
    if kind == "queued":
        body = {**body, "priority": f"PRIORITY_{body.get('priority', 'normal').upper()}"}
    if kind == "result":
        body = {**body, "input_shapes": {k: {"dims": v} for k, v in body.get("input_shapes", {}).items()}}
    msg = pb.RunEvent(job_id=job_id)
    json_format.ParseDict({kind: body}, msg, ignore_unknown_fields=True)
    return msg


class AgentServicer(pb_grpc.AgentServicer):
    """Implements agent.proto's Agent service over a ModelCache and a JobManager."""

    def __init__(self, cache: ModelCache, jobs: JobManager, info: dict, max_jobs: int = 64,
                 uploads: UploadGate | None = None) -> None:
        self.cache = cache
        self.uploads = uploads or UploadGate()
        self.jobs = jobs
        self.info = info
        self.max_jobs = max_jobs
        self.open_jobs = threading.BoundedSemaphore(max_jobs)   # each open Run holds one server thread

    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> pb.DeviceInfo:
        reply = pb.DeviceInfo()
        json_format.ParseDict(self.info, reply, ignore_unknown_fields=True)
        reply.cache_bytes = self.cache.total_bytes()
        reply.cache_max_bytes = self.cache.max_bytes
        reply.queue_length = len(self.jobs.queue)
        return reply

    def MissingModels(self, request: pb.MissingModelsRequest, context) -> pb.MissingModelsReply:
        try:
            return pb.MissingModelsReply(missing=self.cache.missing(request.digests))
        except AgentError as exc:
            _abort(context, exc)

    def UploadModel(self, request_iterator: Iterator[pb.UploadChunk], context) -> pb.UploadReply:
        try:
            with self.uploads.admit():
                return self._upload(self.uploads.messages(request_iterator), context)
        except AgentError as exc:
            _abort(context, exc)

    def _upload(self, messages: Iterator[pb.UploadChunk], context) -> pb.UploadReply:
        first = next(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "an upload must start with a header (digest and size) before any data")

        def data() -> Iterator[bytes]:
            for chunk in messages:
                if chunk.WhichOneof("part") != "data":
                    raise UploadRejected("an upload carries exactly one header, then only data chunks")
                yield chunk.data

        h = first.header
        try:
            stored = self.cache.store(h.digest, h.size_bytes, data())
        except AgentError as exc:
            log.warning("upload of %s refused: %s", h.digest[:16], exc)
            raise
        return pb.UploadReply(digest=stored.digest, size_bytes=stored.size_bytes,
                              already_present=stored.already_present, bytes_received=stored.bytes_received)

    def Run(self, request: pb.RunRequest, context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        if not self.open_jobs.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"this agent already holds {self.max_jobs} open jobs (its --max-jobs): wait for some to "
                          "finish, or start farm-agent with a larger --max-jobs")
        try:
            yield from self._run(request, context)
        finally:
            self.open_jobs.release()

    def _run(self, request: pb.RunRequest, context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        try:
            spec = spec_from_request(request)
            spec.job_id = spec.job_id or uuid.uuid4().hex
            job = self.jobs.register(spec)
        except JobError as exc:
            yield pb.RunEvent(job_id=request.job_id, error=pb.Error(code=exc.code, message=exc.message))
            return
        context.add_callback(lambda: self.jobs.cancel_job(job))  # the client hung up or the RPC ended
        for event in self.jobs.execute(job):
            yield event_to_proto(job.id, event)

    def Cancel(self, request: pb.CancelRequest, context) -> pb.CancelReply:
        state = self.jobs.cancel(request.job_id)
        return pb.CancelReply(cancelled=state != "unknown", state=state)
