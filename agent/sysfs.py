"""Reading the kernel's one-value files (/sys, /proc) that the telemetry polls: a file that is missing,
unreadable or not what it should be reads as None, never an exception."""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str | None:
    """The file's text, stripped; None when it cannot be read."""
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def read_int(path: Path) -> int | None:
    """The file's whole-number value; None when it cannot be read or is not one."""
    text = read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
