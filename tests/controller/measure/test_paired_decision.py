"""Decisions under drift: a bounded CPU hog, pinned to the agent's core, runs during half of the rounds.
The paired rule (contender and baseline in the same loop, median of paired ratios with a 95 % interval)
still picks the truly faster of two files and calls two identical files equal; the old unpaired rule
(each file timed alone, the least disturbed of its rounds kept) gets at least one of the two wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
import pytest

from agent.stats import paired_ratio
from controller.measure.api import bench
from controller.measure.examples import build_mobilenetv2
from controller.measure.paired import NOISE_MARGIN, paired_loop
from controller.measure.settings import MeasureSettings

SETTINGS = MeasureSettings(threads=1, warmup=5, min_iterations=100, min_seconds=1.0)
ROUNDS = 4
HOG_LIMIT_S = 120   # the hog stops by itself even if the test dies


@contextmanager
def cpu_hog(cpu: int) -> Iterator[None]:
    """A busy loop pinned to `cpu`, running until the block ends (at most HOG_LIMIT_S)."""
    code = ("import os, sys, time\n"
            f"os.sched_setaffinity(0, {{{cpu}}})\n"
            "print('spinning', flush=True)\n"
            f"end = time.monotonic() + {HOG_LIMIT_S}\n"
            "while time.monotonic() < end:\n"
            "    pass\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "spinning"   # pinned and running before we measure
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def maybe(condition: bool, cm):
    if condition:
        with cm:
            yield
    else:
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The baseline; an identical copy (other bytes, same graph and weights); a clearly faster file (the
    same architecture at half the width: what pruning half the channels gives)."""
    tmp = tmp_path_factory.mktemp("paired")
    base = build_mobilenetv2(tmp / "baseline.onnx", width=1.0, resolution=96, num_classes=10)
    copy = onnx.load(str(base))
    copy.doc_string = "an identical copy"
    onnx.save(copy, str(tmp / "copy.onnx"))
    thin = build_mobilenetv2(tmp / "thin.onnx", width=0.5, resolution=96, num_classes=10)
    return {"baseline": base, "copy": tmp / "copy.onnx", "thin": thin}


def paired_rule(client, base: Path, cand: Path, cpu: int) -> tuple[str, object]:
    """ROUNDS loops of the candidate with the baseline, the hog on during every other loop; who runs first
    in a pair is swapped every other loop."""
    rounds = []
    for rnd in range(ROUNDS):
        with maybe(rnd in (0, 3), cpu_hog(cpu)):
            rounds.append(paired_loop(client, base, cand, SETTINGS, swapped=rnd % 2 == 1))
    ratio = paired_ratio(rounds)
    return ratio.verdict(NOISE_MARGIN), ratio


def unpaired_rule(client, base: Path, cand: Path, cpu: int, hog_on: str) -> tuple[str, float]:
    """The rule before paired timing: each file timed alone in alternating rounds, the lowest p50 of its
    rounds kept, speedup = baseline p50 / candidate p50, faster from 1.03x. The hog runs while `hog_on`
    ("baseline" or "candidate") is timed: half of the rounds' measurements."""
    p50 = {"baseline": [], "candidate": []}
    for rnd in range(2):
        order = ["baseline", "candidate"] if rnd == 0 else ["candidate", "baseline"]
        for who in order:
            with maybe(who == hog_on, cpu_hog(cpu)):
                p50[who].append(bench(base if who == "baseline" else cand, client, SETTINGS).latency_ms["p50"])
    speedup = min(p50["baseline"]) / min(p50["candidate"])
    return ("faster" if speedup >= 1.03 else "slower" if speedup < 1 / 1.03 else "equal"), speedup


def test_paired_decision_survives_a_cpu_hog_where_the_unpaired_rule_fails(start_agent, files):
    cpu = max(os.sched_getaffinity(0))
    client, _ = start_agent("--cpus", str(cpu), "--job-time-limit", "120")

    verdict, ratio = paired_rule(client, files["baseline"], files["thin"], cpu)
    assert verdict == "faster" and ratio.low >= NOISE_MARGIN, ratio
    verdict, same = paired_rule(client, files["baseline"], files["copy"], cpu)
    assert verdict == "equal" and abs(same.median - 1) < 0.02 and same.low < NOISE_MARGIN, same

    # the old rule, hogged the way a slow spell hits one file's rounds and spares the other's
    old_thin, thin_speedup = unpaired_rule(client, files["baseline"], files["thin"], cpu, hog_on="candidate")
    old_copy, copy_speedup = unpaired_rule(client, files["baseline"], files["copy"], cpu, hog_on="baseline")
    wrong = [f"thin called {old_thin} ({thin_speedup:.2f}x)"] if old_thin != "faster" else []
    wrong += [f"identical copy called {old_copy} ({copy_speedup:.2f}x)"] if old_copy != "equal" else []
    print(f"paired: thin {ratio.text()}, copy {same.text()}; unpaired: thin {thin_speedup:.2f}x, "
          f"copy {copy_speedup:.2f}x")
    assert wrong, (f"the unpaired rule got both right under the hog (thin {thin_speedup:.2f}x, copy "
                   f"{copy_speedup:.2f}x): the hog did not disturb this machine")
