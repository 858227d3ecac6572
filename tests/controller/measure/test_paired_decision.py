"""Decisions under drift: a bounded CPU hog, pinned to the agent's core, runs during half of the rounds.
The paired rule (contender and baseline in the same loop, median of paired ratios with a 95 % interval)
still picks the truly faster of two files and calls two identical files equal. How the old unpaired rule
fares under the same hog depends on how hard the hog slows the machine, so that comparison is a benchmark
(benchmarks/paired_decision.py, docs/benchmarks.md), not a test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.paired_decision import models, paired_rule
from controller.measure.paired import NOISE_MARGIN


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return models(tmp_path_factory.mktemp("paired"))


@pytest.mark.slow
def test_paired_decision_survives_a_cpu_hog(start_agent, files):
    cpu = max(os.sched_getaffinity(0))
    client, _ = start_agent("--cpus", str(cpu), "--job-time-limit", "120")

    verdict, ratio = paired_rule(client, files["baseline"], files["thin"], cpu)
    assert verdict == "faster" and ratio.low >= NOISE_MARGIN, ratio
    verdict, same = paired_rule(client, files["baseline"], files["copy"], cpu)
    assert verdict == "equal" and abs(same.median - 1) < 0.02 and same.low < NOISE_MARGIN, same
