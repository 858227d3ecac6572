"""One typed row per model measured by `farmctl optimize` on a device (each candidate and the baseline):
how it was made, what was measured, and the verdict. The run, the store, the constraints and the reports
all pass these."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.stats import PairedRatio
from controller.measure.paired import PairedRounds
from controller.optimization.quality import Quality

PUBLIC_KEYS = ("name", "techniques", "status", "reason", "latency_ms", "size_bytes", "accuracy", "fidelity",
               "metric_value", "speedup", "speedup_ci", "meets_constraints")


@dataclass
class CandidateRow:
    """One model on one device: how it was made, what was measured, and the verdict."""

    name: str
    techniques: list[str] = field(default_factory=list)
    status: str = "ok"                     # ok | failed | rejected
    reason: str = ""
    latency_ms: dict[str, float] | None = None   # p50, p90, p99
    size_bytes: int | None = None
    accuracy: float | None = None
    fidelity: float | None = None
    top1_agreement: float | None = None
    metric_value: float | None = None
    fidelity_detail: dict = field(default_factory=dict)
    cv: float | None = None
    flags: list[str] = field(default_factory=list)
    path: str | None = None
    model_digest: str | None = None
    details: dict = field(default_factory=dict)  # what the technique recorded when building it
    paired: PairedRounds | None = None           # its loops timed with the baseline
    profile_run_id: int | None = None            # the baseline's profile
    resumed: bool = False                        # measured by an earlier run (from the store)
    speedup: float | None = None                 # the median paired ratio (set by the decision)
    speedup_ci: list[float] | None = None
    meets_constraints: bool = False
    speed_failure: str | None = None             # why it is not measurably faster, if it is not

    @property
    def p50(self) -> float | None:
        return (self.latency_ms or {}).get("p50")

    def ratio(self) -> PairedRatio | None:
        """The speedup over the baseline from its paired loops (None: never timed paired)."""
        return self.paired.ratio() if self.paired else None

    def set_quality(self, q: Quality) -> None:
        self.accuracy, self.fidelity, self.top1_agreement = q.accuracy, q.fidelity, q.top1_agreement
        self.metric_value, self.fidelity_detail = q.metric_value, q.fidelity_detail

    def public(self) -> dict:
        """The keys `farmctl optimize --json` shows for a row."""
        return {k: getattr(self, k) for k in PUBLIC_KEYS}
