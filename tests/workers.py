"""What pytest-xdist's workers of one run share: a folder, and a lock to make a costly thing in it once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


def shared_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run sees (the workers' temporary folders' parent), or this
    session's temporary folder without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def made_once(tmp_path_factory, name: str) -> Iterator[None]:
    """Hold the run-wide lock NAME: the first worker makes a shared thing, the others wait and reuse it."""
    with FileLock(str(shared_dir(tmp_path_factory) / f"{name}.lock")):
        yield
