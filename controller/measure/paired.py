"""Paired decisions (docs/architecture.md, how a number is measured): a candidate is timed in the same loop as the
baseline, one inference of each in turn, and its speedup is the median of the paired ratios with a 95 %
interval. It counts as faster only when the interval's lower end clears the noise margin, so a slow spell
of the machine, which hits both models of a pair alike, decides nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.stats import PairedRatio, paired_ratio
from controller.measure.api import bench

NOISE_MARGIN = 1.02   # "faster" = the paired interval's lower end at least 2 % above the baseline


@dataclass
class PairedRounds:
    """The paired loops of one candidate with the baseline: per round, the baseline's and the candidate's
    per-inference times (ms), where the i-th of each ran back to back."""

    rounds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    stored: PairedRatio | None = None    # the ratio a resumed run read from the store (no raw times)
    stored_p50s: tuple[float, float] | None = None   # and the loops' p50s (p50s())
    _ratio: PairedRatio | None = field(default=None, repr=False)

    def add(self, baseline_ms: np.ndarray, candidate_ms: np.ndarray) -> float:
        """Add one loop; returns that loop's own paired median (for the progress line)."""
        self.rounds.append((np.asarray(baseline_ms), np.asarray(candidate_ms)))
        self._ratio = None
        return paired_ratio([self.rounds[-1]], resamples=1).median

    def ratio(self) -> PairedRatio | None:
        """The speedup over every round (None when nothing was timed paired)."""
        if self._ratio is None and self.rounds:
            self._ratio = paired_ratio(self.rounds)
        return self._ratio or self.stored

    def p50s(self) -> tuple[float, float] | None:
        """(baseline, candidate) p50 in ms over every pair of every round: the loops the ratio comes from."""
        if not self.rounds:
            return self.stored_p50s
        base = np.concatenate([r[0] for r in self.rounds])
        cand = np.concatenate([r[1] for r in self.rounds])
        return float(np.median(base)), float(np.median(cand))

    def least_disturbed(self) -> dict[str, float]:
        """The candidate's p50/p90/p99 from the round in which the baseline ran fastest: the moment the
        machine disturbed least (interference only ever adds time)."""
        _base, cand = min(self.rounds, key=lambda r: float(np.median(r[0])))
        p50, p90, p99 = (float(v) for v in np.percentile(cand, [50, 90, 99]))
        return {"p50": p50, "p90": p90, "p99": p99}


def paired_loop(client, baseline, candidate, settings, store=None, swapped: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """One measured loop of the candidate and the baseline, one inference of each in turn; swapped: the
    baseline is the timed model and the candidate its reference, so neither always runs first. Returns
    (baseline times, candidate times) in ms, pair by pair."""
    if swapped:
        b = bench(baseline, client, settings, store, reference=candidate)
        return b.times_ms, b.reference_times_ms
    b = bench(candidate, client, settings, store, reference=baseline)
    return b.reference_times_ms, b.times_ms


def least_disturbed_baseline(own: dict[str, float], rounds: list[PairedRounds]) -> dict[str, float]:
    """The baseline's p50/p90/p99 at its least disturbed moment: its own measurement or any loop it ran
    in as a candidate's pair, whichever had the lowest p50."""
    best = own
    for paired in rounds:
        for base, _cand in paired.rounds:
            p50, p90, p99 = (float(v) for v in np.percentile(base, [50, 90, 99]))
            if p50 < best["p50"]:
                best = {"p50": p50, "p90": p90, "p99": p99}
    return best


def could_be_faster(ratio: PairedRatio | None) -> bool:
    """Worth timing again: the interval still reaches the noise margin."""
    return ratio is not None and ratio.high >= NOISE_MARGIN


def speed_failure(ratio: PairedRatio) -> str | None:
    """Why a candidate does not count as faster than the baseline, or None when it does."""
    if ratio.high < 1.0:
        return f"slower than the baseline ({ratio.text()}): never chosen"
    if ratio.low < NOISE_MARGIN:
        return (f"not measurably faster than the baseline ({ratio.text()}; the interval's lower end must clear "
                f"{NOISE_MARGIN}x, the noise margin)")
    return None


def ratio_to_json(ratio: PairedRatio | None) -> dict | None:
    """How a paired ratio is kept in the store."""
    if ratio is None:
        return None
    return {"median": ratio.median, "low": ratio.low, "high": ratio.high, "pairs": ratio.pairs,
            "rounds": ratio.rounds}


def ratio_from_json(d: dict | None) -> PairedRatio | None:
    """A paired ratio read back from the store."""
    return PairedRatio(d["median"], d["low"], d["high"], d["pairs"], d["rounds"]) if d else None
