"""Measurements that count only when the device ran at its undisturbed speed: each file is benchmarked
with a fixed reference model in the same loop (the agent's reference_digest), and a measurement taken
while the reference ran slow is taken again in a later round. NAS's block latency table
(controller.optimization.nas) is built this way; any caller with a reference model can use it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.fleet.client import AgentClient
from controller.measure.api import bench
from controller.measure.preflight import ModelRef
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Undisturbed:
    """When a measurement beside the reference counts (measure_undisturbed)."""

    accept: float = 1.10     # undisturbed: the reference ran within 10 % of its fastest p50 in this run
    need: int = 1            # undisturbed measurements per file (their median is kept)
    max_attempts: int = 6    # then the least disturbed one (lowest reference) is kept, scaled by the reference


@dataclass
class Reference:
    """The fixed model timed in the same loop as every NAS measurement (one inference each, alternately).
    A shared machine's speed drifts: this VM switches between two speeds about 1.6x apart, for seconds to
    a minute at a time, and the slowdown is not the same for every operator. So a measurement counts only
    when the reference ran at (within Undisturbed.accept of) its fastest in this run, and each value is
    expressed at the reference's nominal speed: p50 x nominal / the reference's p50 in the same loop.
    A farm_latency_table keeps its Reference as `table.context`."""

    model: Path | ModelRef            # the reference model file (make_reference checks it once)
    key: str                          # the reference architecture (part of the table's identity)
    rule: Undisturbed = Undisturbed()  # when a measurement beside it counts
    nominal_ms: float | None = None   # from the stored table, or the fastest seen while building it
    fastest_ms: float = float("inf")  # fastest reference p50 seen in this run
    folder: Any = field(default=None, repr=False)   # keeps the file's temporary folder alive


@dataclass
class Measured:
    """One file measured by measure_undisturbed()."""

    ms: float          # at the reference's nominal speed (what the table holds and the check compares)
    raw_ms: float      # the p50 as measured, in the kept measurements (median)
    attempts: int
    undisturbed: int   # how many of the attempts had the reference within `accept` of its fastest
    run_id: int | None


def measure_undisturbed(paths: list[Path], client: AgentClient, settings: MeasureSettings, store: ResultsStore,
                        reference: Reference, progress=None, labels: list[str] | None = None) -> list[Measured]:
    """Benchmark each file with the reference in the same loop, in rounds (every file once, then again ...),
    until each has reference.rule.need undisturbed measurements or rule.max_attempts. A file measured while
    the device was slow is measured again in a later round, when the slow spell has likely passed."""
    say = progress or log.debug
    rule = reference.rule
    if reference.fastest_ms == float("inf"):   # find the device's undisturbed speed first
        for _ in range(3):
            b = bench(reference.model, client, settings, store, reference=reference.model)
            reference.fastest_ms = min(reference.fastest_ms, b.latency_ms["p50"], b.reference_latency_ms["p50"])
    samples: list[list[tuple[float, float, int | None]]] = [[] for _ in paths]

    def undisturbed(i: int) -> list:
        return [s for s in samples[i] if s[1] <= rule.accept * reference.fastest_ms]

    pending = list(range(len(paths)))
    while pending:
        for i in pending:
            b = bench(paths[i], client, settings, store, reference=reference.model)
            x, r = b.latency_ms["p50"], b.reference_latency_ms["p50"]
            samples[i].append((x, r, b.run_id))
            reference.fastest_ms = min(reference.fastest_ms, r)
            slow = r / reference.fastest_ms
            say(f"{labels[i] if labels else paths[i].name}: {x * 1000:.1f} us, reference {r * 1000:.1f} us"
                + (f" ({slow:.2f}x its fastest: disturbed)" if slow > rule.accept else ""))
        pending = [i for i in range(len(paths))
                   if len(undisturbed(i)) < rule.need and len(samples[i]) < rule.max_attempts]
    if reference.nominal_ms is None:
        reference.nominal_ms = reference.fastest_ms
    out = []
    for i in range(len(paths)):
        kept = undisturbed(i) or [min(samples[i], key=lambda s: s[1])]
        out.append(Measured(ms=float(np.median([x / r for x, r, _ in kept])) * reference.nominal_ms,
                            raw_ms=float(np.median([x for x, _, _ in kept])), attempts=len(samples[i]),
                            undisturbed=len(undisturbed(i)), run_id=kept[0][2]))
    return out
