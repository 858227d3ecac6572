"""What the summary and the tables say: each number says what it is (the paired speedup and the p50s of
the loops it comes from), a ratio is never rounded into the opposite of its verdict, and a lost job is
named with what to do about it."""

from __future__ import annotations

import numpy as np

from agent.stats import PairedRatio
from controller.measure.paired import PairedRounds, speed_failure
from controller.optimization.constraints import Constraints
from controller.optimization.report import result_summary, to_markdown
from controller.optimization.results import DeviceResult, OptimizeResult
from controller.optimization.rows import CandidateRow


def _result(tmp_path, row: CandidateRow, lost: list[str] | None = None) -> OptimizeResult:
    base = CandidateRow("baseline", latency_ms={"p50": 9.0}, size_bytes=1_000_000, fidelity=1.0)
    ratio = row.ratio()
    row.speedup, row.speedup_ci = ratio.median, ratio.interval
    dev = DeviceResult("local", base, [row], row.name, str(tmp_path / "chosen-local.onnx"))
    return OptimizeResult("m", [dev], [], Constraints(), tmp_path, lost=lost or [])


def test_the_chosen_line_shows_the_p50s_of_the_loops_its_speedup_comes_from(tmp_path):
    rng = np.random.default_rng(0)
    paired = PairedRounds()
    base_ms = 10.0 + rng.random(200)
    paired.add(base_ms, base_ms / 2)
    # its own least disturbed p50 and the baseline's come from different loops: not what the line quotes
    row = CandidateRow("int8", ["int8"], latency_ms={"p50": 3.0}, size_bytes=500_000, fidelity=0.999, paired=paired)
    line = result_summary(_result(tmp_path, row)).splitlines()[0]
    b, c = float(np.median(base_ms)), float(np.median(base_ms / 2))
    assert line.startswith("local: chose int8: 2.00x (95 % CI 2.00-2.00) faster, timed in the same loops as the "
                           f"baseline (p50 {c:.3f} ms vs {b:.3f} ms there)"), line


def test_a_ratio_below_one_never_prints_as_one():
    ratio = PairedRatio(0.998, 0.9977, 0.9983, pairs=300, rounds=3)
    assert ratio.text() == "0.9980x (95 % CI 0.9977-0.9983)"
    assert speed_failure(ratio) == "slower than the baseline (0.9980x (95 % CI 0.9977-0.9983)): never chosen"
    assert PairedRatio(1.23, 1.2, 1.26, 100, 1).text() == "1.23x (95 % CI 1.20-1.26)"


def test_the_table_shows_the_digits_the_verdict_needs(tmp_path):
    paired = PairedRounds(stored=PairedRatio(0.998, 0.9977, 0.9983, pairs=300, rounds=3))
    row = CandidateRow("fp16", ["fp16"], latency_ms={"p50": 9.1}, size_bytes=500_000, fidelity=1.0, paired=paired)
    md = to_markdown(_result(tmp_path, row))
    assert "| 0.998x | 0.9977-0.9983 |" in md


def test_lost_jobs_are_named_with_what_to_do(tmp_path):
    paired = PairedRounds()
    paired.add(np.full(50, 10.0), np.full(50, 5.0))
    row = CandidateRow("int8", ["int8"], latency_ms={"p50": 5.0}, size_bytes=500_000, fidelity=0.999, paired=paired)
    text = result_summary(_result(tmp_path, row, lost=["a confirmation loop of int8 on local (RUNNER_CRASHED)"]))
    assert "lost: a confirmation loop of int8 on local (RUNNER_CRASHED)" in text
    assert "the same command again measures what was lost" in text


def test_a_fidelity_on_random_inputs_is_said_in_the_terminal(tmp_path):
    paired = PairedRounds()
    paired.add(np.full(50, 10.0), np.full(50, 5.0))
    row = CandidateRow("int8", ["int8"], latency_ms={"p50": 5.0}, size_bytes=500_000, fidelity=0.999, paired=paired)
    result = _result(tmp_path, row)
    result.notes = ["data: synthetic random inputs: give --calibration-data and --eval-data (real samples) for "
                    "numbers that mean something for your use"]
    assert ("note: the fidelity above was measured on synthetic random inputs: give --calibration-data"
            in result_summary(result))
