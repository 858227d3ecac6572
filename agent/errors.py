"""Exception types of the agent; the servicer maps them to gRPC codes and error events in one place."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from core.errors import FarmError, JobError

__all__ = ["AgentError", "InvalidDigest", "UploadRejected", "CacheFull", "JobError"]

AgentError = FarmError  # the agent's errors are FarmErrors: one root, a sentence that says what to do


class InvalidDigest(AgentError):
    """A digest that is not 64 lowercase hex characters."""


class UploadRejected(AgentError):
    """An upload that does not match its header (size or digest) or breaks the protocol."""


class CacheFull(AgentError):
    """A model larger than the cache cap, or a cache full of models in use."""


def disk_full_message(folder: Path) -> str:
    """The sentence for a job that ran out of disk in its working folder (no traceback: nothing is broken)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    return (f"the agent's disk is full ({free} bytes free under {folder}): the job could not write its files; "
            "free space there, or start farm-agent with --cache-dir on a larger disk")


def is_disk_full(exc: BaseException, folder: Path, slack: int = 1 << 20) -> bool:
    """True for ENOSPC, or for another failure while the folder's disk has under `slack` bytes free (a
    library that swallowed ENOSPC and left a truncated file behind, e.g. a profile's JSON)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(folder).free < slack
    except OSError:
        return False
