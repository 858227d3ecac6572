"""Exception types of the controller; farmctl prints them as one actionable line."""

from __future__ import annotations

from core.errors import FarmError, ModelError, UsageError

__all__ = ["FarmError", "ModelError", "UsageError", "DeviceError", "AgentUnavailable", "JobFailed"]


class DeviceError(FarmError):
    """A device is unknown, unreachable or refused us."""


class AgentUnavailable(DeviceError):
    """The agent stopped answering (down, killed, unreachable, or no answer in time): another agent of
    the same class may take the job."""


class JobFailed(FarmError):
    """A job ended with an error event from the agent; `code` is its ErrorCode name."""

    def __init__(self, code: str, message: str, device: str = "") -> None:
        super().__init__(f"{device + ': ' if device else ''}{code}: {message}")
        self.code = code
        self.message = message
