"""What `farmctl optimize` returns: the comparison on each device (typed rows, the choice or why there is
none) and the whole result with its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from controller.optimization.constraints import Constraints
from controller.optimization.rows import CandidateRow


@dataclass
class DeviceResult:
    """The comparison on one device: baseline, every candidate, and the choice."""

    device: str
    baseline: CandidateRow
    candidates: list[CandidateRow]
    chosen: str | None
    artifact: str | None
    failure: str | None = None   # why nothing was chosen
    closest: list[str] = field(default_factory=list)   # when no candidate qualified: the nearest, and why not

    def row(self, name: str) -> CandidateRow | None:
        return next((r for r in [self.baseline, *self.candidates] if r.name == name), None)

    def to_json(self, model: str, report: str | None, metric: str | None = None) -> dict:
        """The object docs/architecture.md lists for `farmctl optimize --json` (`metric`: the --metric's name)."""
        return {"device": self.device, "model": model, "metric": metric, "baseline": self.baseline.public(),
                "candidates": [c.public() for c in self.candidates], "chosen": self.chosen,
                "artifact": self.artifact, "report": report, "closest": self.closest}


@dataclass
class OptimizeResult:
    """What optimize() returns: one DeviceResult per device, plus the plan's skips and the report."""

    model: str
    devices: list[DeviceResult]
    skipped: list[dict]
    constraints: Constraints
    out_dir: Path
    report: Path | None = None
    notes: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)   # jobs that failed without failing a row (a loop, a profile)
    wall_seconds: float = 0.0
    budget_reached: bool = False
    metric: str | None = None      # the task metric's name (--metric), if one was given
    threads: int | None = None     # the measurement threads (shown in the plot's title)
    created: str = field(default_factory=lambda: date.today().isoformat())

    def to_json(self) -> dict:
        """One device: exactly the documented keys. Several: those keys per device under `devices`."""
        per = [d.to_json(self.model, str(self.report) if self.report else None, self.metric) for d in self.devices]
        if len(per) == 1:
            return {**per[0], "lost": self.lost}
        return {"devices": per, "model": self.model, "report": str(self.report) if self.report else None,
                "lost": self.lost}
