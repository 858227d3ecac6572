"""Measurement settings shared by bench, profile and (later) optimize."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from controller.errors import UsageError
from protos import agent_pb2 as pb

PRIORITIES = {"low": pb.PRIORITY_LOW, "normal": pb.PRIORITY_NORMAL, "high": pb.PRIORITY_HIGH}


@dataclass
class MeasureSettings:
    """How a model is timed on a device (docs/architecture.md, how a number is measured)."""

    threads: int = 0                 # 0 = the device's physical cores (the result records the number)
    warmup: int = 10
    min_iterations: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 60.0
    profile_iterations: int = 30
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    time_limit_s: float = 0.0        # 0 = the agent's default
    memory_limit_mb: float = 0.0     # 0 = the agent's default
    # Which queued job a busy agent runs next (low | normal | high). It changes when a job runs, never how it
    # is measured: it is not stored with results nor part of any key, so a rerun at another priority resumes.
    priority: str = "normal"

    def __post_init__(self) -> None:
        if self.priority not in PRIORITIES:
            raise UsageError(f"priority {self.priority!r} is not one of low, normal, high; pick one of those "
                             "(e.g. --priority high)")

    def to_proto(self) -> pb.MeasureSettings:
        """The settings as sent to the agent."""
        return pb.MeasureSettings(
            threads=self.threads, warmup=self.warmup, min_iterations=self.min_iterations,
            min_seconds=self.min_seconds, max_seconds=self.max_seconds,
            profile_iterations=self.profile_iterations,
            input_shapes={k: pb.Shape(dims=v) for k, v in self.input_shapes.items()})

    def run_priority(self) -> int:
        """The priority as RunRequest.priority."""
        return PRIORITIES[self.priority]

    def as_dict(self) -> dict:
        """Plain dict for the results store (without the priority: it says when, not how, a job ran)."""
        d = asdict(self)
        d.pop("priority")
        return d

    def key(self, threads_used: int) -> str:
        """Hash of what changes the numbers: used as part of a result's identity."""
        d = {k: v for k, v in self.as_dict().items() if k not in ("time_limit_s", "memory_limit_mb")}
        d["threads"] = threads_used
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """Parse NAME=1,3,224,224 (also accepts x as separator) into (name, dims)."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise UsageError(f"--input-shape '{text}' must look like NAME=1,3,224,224")
    try:
        values = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise UsageError(f"--input-shape '{text}': dimensions must be integers, e.g. {name}=1,3,224,224") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"--input-shape '{text}': every dimension must be a positive integer")
    return name, values
