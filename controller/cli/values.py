"""What a number on farmctl's command line may be: every int and float flag refuses NaN, infinity and
values outside its range with one sentence (argparse then exits 2), flags are never taken from an
abbreviation, and an unknown flag gets "did you mean". argparse does the parsing; this only gives each
numeric flag's `type` its range."""

from __future__ import annotations

import argparse
import difflib
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Allowed values of one flag: low/high bounds (None: open), whether the low bound itself is allowed."""

    low: float | None = 0.0
    high: float | None = None
    low_inclusive: bool = True

    def describe(self) -> str:
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is None:
            return f"a number {'>=' if self.low_inclusive else '>'} {self.low:g}"
        return f"a number from {self.low:g} to {self.high:g}"


NON_NEGATIVE = Range()
POSITIVE = Range(low_inclusive=False)
# flags whose range is not "finite and >= 0" (0 keeps its documented meaning where a flag has one: --threads
# 0 = the device's cores, --time-limit 0 = the agent's default)
RANGES = {
    "--max-latency-ms": POSITIVE, "--max-size-mb": POSITIVE, "--budget-minutes": POSITIVE, "--recovery-minutes": POSITIVE,
    "--max-seconds": POSITIVE, "--min-iterations": Range(1), "--iterations": Range(1), "--population": Range(1),
    "--image-scale": POSITIVE, "--min-fidelity": Range(0, 1), "--max-accuracy-drop": Range(0, 100),
    "--min-accuracy": Range(0, 1), "--min-metric": Range(None), "--bottleneck-percent": Range(0, 100),
    "--timeout": POSITIVE, "--device-timeout": POSITIVE, "--poll-seconds": POSITIVE, "--days": Range(1),
    "--discover-seconds": POSITIVE, "--port": Range(0, 65535), "--threshold": Range(0, 1),
    "--image-size": Range(1), "--latency-ms": POSITIVE, "--size-mb": POSITIVE,   # (nas's older spellings)
}


def checked(kind: type, flag: str, allowed: Range):
    """An argparse `type` for `flag`: `kind` (int or float), finite, within `allowed`."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}; give {allowed.describe()}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number; give {allowed.describe()}")
        below = allowed.low is not None and (value < allowed.low or (value == allowed.low and not allowed.low_inclusive))
        above = allowed.high is not None and value > allowed.high
        if below or above:
            raise argparse.ArgumentTypeError(f"{text} is out of range; give {allowed.describe()}")
        return value

    convert.__name__ = kind.__name__   # argparse names the type in its own messages
    return convert


def check_numbers(parser: argparse.ArgumentParser) -> None:
    """Give every int/float option of `parser` its checked type, and turn off abbreviations."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if action.type in (int, float):
            flag = next((o for o in action.option_strings if o.startswith("--")), action.dest)
            action.type = checked(action.type, flag, RANGES.get(flag, NON_NEGATIVE))


def suggest(message: str, options: list[str]) -> str:
    """argparse's 'unrecognized arguments: --devcie x' with 'did you mean --device?' for each close flag."""
    m = re.search(r"unrecognized arguments: (.*)", message)
    if not m:
        return message
    hints = []
    for word in m.group(1).split():
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.75)
            if close:
                hints.append(f"{word.split('=', 1)[0]}: did you mean {close[0]}?")
    return message + ("; " + "; ".join(hints) if hints else "")


def all_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every --flag of a parser and of its subcommands."""
    out: list[str] = []
    for action in parser._actions:
        out += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += all_options(sub)
    return sorted(set(out))


class FarmParser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a mistyped flag."""

    def error(self, message: str):
        super().error(suggest(message, all_options(self)))
