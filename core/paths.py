"""Where edgefarm keeps its caches, and file names as printable text."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$EDGEFARM_CACHE, else $XDG_CACHE_HOME/edgefarm, else ~/.cache/edgefarm."""
    env = os.environ.get("EDGEFARM_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "edgefarm"


def printable(text: str) -> str:
    """A file name or path as text for tables, the store and the wire: bytes that are not UTF-8 (a Linux
    file name may hold any) shown as U+FFFD instead of failing every later step."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
