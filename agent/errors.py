"""Exception types of the agent; the servicer maps them to gRPC codes and error events in one place."""

from __future__ import annotations


class AgentError(Exception):
    """Base class: a problem a client can act on, with a sentence that says how."""


class InvalidDigest(AgentError):
    """A digest that is not 64 lowercase hex characters."""


class UploadRejected(AgentError):
    """An upload that does not match its header (size or digest) or breaks the protocol."""


class CacheFull(AgentError):
    """A model larger than the cache cap, or a cache full of models in use."""


class JobError(AgentError):
    """A job that ended without a result; `code` is an ErrorCode name from agent.proto."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
