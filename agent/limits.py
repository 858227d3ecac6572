"""Every number the agent takes, from its command line or from the wire, checked in one place: NaN,
infinity, negatives and absurd sizes are refused with one sentence that names the setting and its range
(`nan > ceiling` is False, so an unchecked NaN slips past every comparison)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from agent.errors import JobError


@dataclass(frozen=True)
class Range:
    """What a setting accepts: a finite number in [low, high], zero allowed or not, integer or not."""

    what: str
    low: float = 0.0
    high: float = 1e9
    zero: bool = True
    integer: bool = False
    example: str = "60"

    def problem(self, value) -> str | None:
        """None when value fits, else the sentence that says why not."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"{self.what} '{value}' is not a number; give one like {self.example}"
        if math.isnan(number) or math.isinf(number):
            return f"{self.what} {value} is not a finite number; give one like {self.example}"
        if self.integer and number != int(number):
            return f"{self.what} {value} is not a whole number; give one like {self.example}"
        if number == 0 and not self.zero:
            return f"{self.what} must be above 0 (e.g. {self.example})"
        if number < self.low or number > self.high:
            return f"{self.what} {value} is out of range: give {self.low:g} to {self.high:g} (e.g. {self.example})"
        return None

    def cli(self, text: str) -> float | int:
        """An argparse `type=`: the parsed value, or the sentence as argparse's error."""
        why = self.problem(text)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return int(float(text)) if self.integer else float(text)


# the agent's command line
JOB_TIME_LIMIT = Range("--job-time-limit (seconds)", high=7 * 86400, zero=False, example="600")
JOB_MEMORY_MB = Range("--job-memory-limit-mb", high=2**24, example="2048 (0 = 80 % of RAM)")
CACHE_MAX_MB = Range("--cache-max-mb", high=2**30, zero=False, example="2048")
AGING_S = Range("--priority-aging-s (seconds)", high=30 * 86400, zero=False, example="60")
MAX_JOBS = Range("--max-jobs", low=1, high=10000, integer=True, example="64")
MAX_UPLOADS = Range("--max-uploads", low=1, high=1000, integer=True, example="8")
UPLOAD_IDLE_S = Range("--upload-idle-s (seconds)", high=86400, zero=False, example="30")
THREADS = Range("--threads", high=4096, integer=True, example="4 (0 = the physical cores)")

# a RunRequest's numbers (the ceilings, --job-time-limit and --job-memory-limit-mb, are checked after these)
WIRE = {
    "time_limit_s": Range("the job's time_limit_s", high=7 * 86400, example="60 (0 = the agent's default)"),
    "memory_limit_bytes": Range("the job's memory_limit_bytes", high=2**50, integer=True, example="0"),
    "threads": Range("settings.threads", high=4096, integer=True, example="1"),
    "warmup": Range("settings.warmup", high=1e7, integer=True, example="10"),
    "min_iterations": Range("settings.min_iterations", high=1e9, integer=True, example="50"),
    "min_seconds": Range("settings.min_seconds", high=7 * 86400, example="1.0"),
    "max_seconds": Range("settings.max_seconds", high=7 * 86400, example="60"),
    "profile_iterations": Range("settings.profile_iterations", high=1e7, integer=True, example="30"),
}
DIM = Range("an --input-shape dimension", low=1, high=2**31 - 1, integer=True, example="640")


def check_job_numbers(spec) -> None:
    """Refuse a JobSpec whose numbers are NaN, infinite, negative or absurd (JobError INVALID_INPUT)."""
    for name, rule in WIRE.items():
        why = rule.problem(getattr(spec, name))
        if why is not None:
            raise JobError("INVALID_INPUT", why)
    for input_name, dims in (spec.input_shapes or {}).items():
        for d in dims:
            why = DIM.problem(d)
            if why is not None:
                raise JobError("INVALID_INPUT", f"input '{input_name[:80]}': {why}")
