"""Where the controller keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$EDGEFARM_CACHE, else $XDG_CACHE_HOME/edgefarm, else ~/.cache/edgefarm."""
    env = os.environ.get("EDGEFARM_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "edgefarm"
