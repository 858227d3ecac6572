"""The error root: every error a user can act on is a FarmError with a sentence that says what to do."""

from __future__ import annotations


class FarmError(Exception):
    """Base class for errors a user can act on."""


class UsageError(FarmError):
    """The command line or an option's value is wrong (farmctl exits 2, like argparse's own errors)."""


class ModelError(FarmError):
    """The model file is missing, malformed, or needs input shapes."""


class JobError(FarmError):
    """A job (or its inputs) that cannot go on; `code` is an ErrorCode name from protos/agent.proto."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
