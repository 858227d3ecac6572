"""farmctl: the controller's command line (the command families are the sibling modules)."""

from __future__ import annotations

import argparse
import logging
import sys

import agent
from controller.cli.dashboard import add_parser as add_dashboard
from controller.cli.fleet import add_parsers as add_fleet
from controller.cli.help import HelpFormatter, add_global_flags, finish
from controller.cli.measure import add_parsers as add_measure
from controller.cli.nas import add_parser as add_nas
from controller.cli.optimize import add_parser as add_optimize
from controller.cli.results import add_parsers as add_results
from controller.cli.techniques import add_parsers as add_techniques
from controller.cli.values import FarmParser
from controller.errors import FarmError, UsageError
from controller.measure.api import default_store_path

EXIT_FAILURE, EXIT_USAGE = 1, 2   # 3 (no candidate meets the constraints) is optimize's and nas's
EXIT_CODES = """exit status:
  0  done
  1  the work failed (device unreachable, model refused, job failed)
  2  the command line is wrong (unknown flag, bad value)
  3  optimize or nas: no candidate meets the constraints (what was measured is stored)
  130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    """farmctl's command line."""
    parser = FarmParser(prog="farmctl", description="edgefarm controller: measure models on "
                                     "real devices", epilog=EXIT_CODES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"farmctl {agent.__version__}")
    add_global_flags(parser, {"verbose": False, "quiet": False, "store": default_store_path(), "inventory": None})
    sub = parser.add_subparsers(dest="command", required=True)
    add_measure(sub)
    add_results(sub)
    add_optimize(sub)
    add_nas(sub)
    add_techniques(sub)
    add_fleet(sub)
    add_dashboard(sub)
    add_completion(sub)
    return finish(parser)


def add_completion(sub) -> None:
    """Register `farmctl completion SHELL`."""
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or tcsh)")
    p.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    p.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        raise FarmError("shell completion needs shtab: pip install shtab (it is in the farm extra)") from None
    print(shtab.complete(build_parser(), args.shell))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and turn a FarmError into one line: exit 1 for a failure at run time, 2 for
    a wrong command line (argparse's own, and UsageError), 3 when no candidate meets the constraints."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except FarmError as exc:
        print(f"farmctl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
    except KeyboardInterrupt:
        print("farmctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
