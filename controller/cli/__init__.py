"""The farmctl command line: one module per command family (measure, optimize, nas, techniques, fleet),
shared flags in flags.py, the parser and the entry point in main.py."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the farmctl console script. The command modules load here, inside the function, so
    that a missing controller extra is one sentence saying what to install, not a traceback."""
    try:
        from controller.cli.main import main as run
    except ImportError as exc:
        print(f"farmctl: {exc}; install the controller extra: pip install 'edgefarm[controller]'", file=sys.stderr)
        return 1
    return run(argv)
