"""The farmctl command line: one module per command family (measure, optimize, nas, techniques, fleet),
shared flags in flags.py, the parser and the entry point in main.py."""

from __future__ import annotations

import sys

from core.extras import missing_message


def main(argv: list[str] | None = None) -> int:
    """Entry point of the farmctl console script. The command modules load here, inside the function, and
    a command runs here too, so that a package missing from the installed extras (torch for optimize on a
    `[farm]` install, say) is one sentence saying which extra to install, not a traceback."""
    try:
        from controller.cli.main import main as run

        return run(argv)
    except ImportError as exc:
        message = missing_message(exc)
        if message is None:
            raise
        print(f"farmctl: error: {message}", file=sys.stderr)
        return 1
