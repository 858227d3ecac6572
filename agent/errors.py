"""Exception types of the agent; the servicer maps them to gRPC codes and error events in one place."""

from __future__ import annotations

from core.errors import FarmError, JobError

__all__ = ["AgentError", "InvalidDigest", "UploadRejected", "CacheFull", "JobError"]

AgentError = FarmError  # the agent's errors are FarmErrors: one root, a sentence that says what to do


class InvalidDigest(AgentError):
    """A digest that is not 64 lowercase hex characters."""


class UploadRejected(AgentError):
    """An upload that does not match its header (size or digest) or breaks the protocol."""


class CacheFull(AgentError):
    """A model larger than the cache cap, or a cache full of models in use."""
