"""farmctl: the controller's command line (the command families are the sibling modules)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import agent
from controller.cli.fleet import add_parsers as add_fleet
from controller.cli.measure import add_parsers as add_measure
from controller.cli.nas import add_parser as add_nas
from controller.cli.optimize import add_parser as add_optimize
from controller.cli.techniques import add_parsers as add_techniques
from controller.errors import FarmError
from controller.measure.api import default_store_path


def build_parser() -> argparse.ArgumentParser:
    """farmctl's command line."""
    parser = argparse.ArgumentParser(prog="farmctl", description="edgefarm controller: measure models on "
                                     "real devices")
    parser.add_argument("--version", action="version", version=f"farmctl {agent.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--store", type=Path, default=default_store_path(),
                        help="results store, a SQLite file (default ./edgefarm-results.db or $EDGEFARM_STORE)")
    parser.add_argument("--inventory", type=Path, default=None,
                        help="fleet file (default ./inventory.yaml if present, else just 'local')")
    sub = parser.add_subparsers(dest="command", required=True)
    add_measure(sub)
    add_optimize(sub)
    add_nas(sub)
    add_techniques(sub)
    add_fleet(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and turn a FarmError into one line and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except FarmError as exc:
        print(f"farmctl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("farmctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
