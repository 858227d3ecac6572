"""Paired against unpaired decisions under a CPU hog: how often each rule gets two known answers right.

Two known answers: a MobileNetV2 at half the width is truly faster than the full one, and a byte-different
copy of the full one is truly equal. A bounded busy loop, pinned to the agent's core, runs during half of the
measurements. The paired rule times the candidate and the baseline in the same loop (median of paired ratios,
95 % interval); the old unpaired rule timed each file alone and kept the least disturbed of its rounds, the
hog landing on one file's rounds and sparing the other's. How wrong the old rule goes depends on how hard the
hog slows this machine, which is why this is a benchmark and not a test (the test,
tests/controller/measure/test_paired_decision.py, checks only the paired rule).

    python benchmarks/paired_decision.py [--repeats 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.stats import paired_ratio  # noqa: E402
from benchmarks._common import machine, publish  # noqa: E402
from controller.fleet.local import LocalAgent  # noqa: E402
from controller.measure.api import bench  # noqa: E402
from controller.measure.examples import build_mobilenetv2  # noqa: E402
from controller.measure.paired import NOISE_MARGIN, paired_loop  # noqa: E402
from controller.measure.settings import MeasureSettings  # noqa: E402

SETTINGS = MeasureSettings(threads=1, warmup=5, min_iterations=100, min_seconds=1.0)
ROUNDS = 4
HOG_LIMIT_S = 120   # the hog stops by itself even if its parent dies


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
        if proc.stdout.readline().strip() != "spinning":     # pinned and running before anything is timed
            raise RuntimeError("the CPU hog did not start")
        yield
    finally:
        proc.kill()
        proc.wait()


def hogged(on: bool, cpu: int):
    return cpu_hog(cpu) if on else nullcontext()


def models(folder: Path) -> dict[str, Path]:
    """The baseline; an identical copy (other bytes, same graph and weights); a clearly faster file (the
    same architecture at half the width: what pruning half the channels gives)."""
    base = build_mobilenetv2(folder / "baseline.onnx", width=1.0, resolution=96, num_classes=10)
    copy = onnx.load(str(base))
    copy.doc_string = "an identical copy"
    onnx.save(copy, str(folder / "copy.onnx"))
    thin = build_mobilenetv2(folder / "thin.onnx", width=0.5, resolution=96, num_classes=10)
    return {"baseline": base, "copy": folder / "copy.onnx", "thin": thin}


def paired_rule(client, base: Path, cand: Path, cpu: int) -> tuple[str, object]:
    """ROUNDS loops of the candidate with the baseline, the hog on during every other loop; who runs first
    in a pair is swapped every other loop."""
    rounds = []
    for rnd in range(ROUNDS):
        with hogged(rnd in (0, 3), cpu):
            rounds.append(paired_loop(client, base, cand, SETTINGS, swapped=rnd % 2 == 1))
    ratio = paired_ratio(rounds)
    return ratio.verdict(NOISE_MARGIN), ratio


def unpaired_rule(client, base: Path, cand: Path, cpu: int, hog_on: str) -> tuple[str, float]:
    """The rule before paired timing: each file timed alone in alternating rounds, the lowest p50 of its
    rounds kept, speedup = baseline p50 / candidate p50, faster from 1.03x. The hog runs while `hog_on`
    ("baseline" or "candidate") is timed: half of the rounds' measurements."""
    p50 = {"baseline": [], "candidate": []}
    for rnd in range(2):
        for who in (["baseline", "candidate"] if rnd == 0 else ["candidate", "baseline"]):
            with hogged(who == hog_on, cpu):
                p50[who].append(bench(base if who == "baseline" else cand, client, SETTINGS).latency_ms["p50"])
    speedup = min(p50["baseline"]) / min(p50["candidate"])
    return ("faster" if speedup >= 1.03 else "slower" if speedup < 1 / 1.03 else "equal"), speedup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true", help="put the table into docs/benchmarks.md")
    args = ap.parse_args(argv)
    cpu = max(os.sched_getaffinity(0))
    rows, right = [], {"paired": 0, "unpaired": 0}
    with tempfile.TemporaryDirectory() as tmp:
        files = models(Path(tmp))
        agent = LocalAgent(cache_dir=Path(tmp) / "agent", name="paired-bench",
                           extra_args=["--cpus", str(cpu), "--job-time-limit", "120"])
        client = agent.start()
        try:
            for rep in range(1, args.repeats + 1):
                verdict, ratio = paired_rule(client, files["baseline"], files["thin"], cpu)
                same_verdict, same = paired_rule(client, files["baseline"], files["copy"], cpu)
                old_thin, thin_x = unpaired_rule(client, files["baseline"], files["thin"], cpu, "candidate")
                old_copy, copy_x = unpaired_rule(client, files["baseline"], files["copy"], cpu, "baseline")
                right["paired"] += (verdict == "faster") + (same_verdict == "equal")
                right["unpaired"] += (old_thin == "faster") + (old_copy == "equal")
                rows.append(f"| {rep} | {verdict} ({ratio.text()}) | {same_verdict} ({same.text()}) | "
                            f"{old_thin} ({thin_x:.2f}x) | {old_copy} ({copy_x:.2f}x) |")
                print(rows[-1], flush=True)
        finally:
            agent.stop()
    total = 2 * args.repeats
    text = "\n".join([
        f"Measured on {machine()}, by `python benchmarks/paired_decision.py --repeats {args.repeats}`: the agent "
        f"pinned to CPU {cpu}, a busy loop pinned to the same CPU during half of the measurements; truth: the "
        "half-width MobileNetV2 is faster, the copy is equal.",
        "",
        "| repeat | paired: half width | paired: copy | unpaired: half width | unpaired: copy |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Right answers: paired {right['paired']}/{total}, unpaired {right['unpaired']}/{total}.",
    ])
    return publish("paired-decision", text, args.write_docs)


if __name__ == "__main__":
    sys.exit(main())
