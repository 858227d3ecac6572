"""measure_undisturbed: a measurement taken while the reference model ran slow is taken again in a later
round, and each value is expressed at the reference's nominal speed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import controller.measure.undisturbed as undisturbed


def test_measurements_taken_while_the_device_was_slow_are_taken_again(monkeypatch, tmp_path):
    """measure_undisturbed's rounds, with the agent's answers scripted: the reference's p50 says when the
    device was slowed (this VM's speed drops 1.6x for seconds at a time)."""
    answers = {  # file -> (model p50, reference p50) per attempt
        "a": [(1.0, 0.10), (1.1, 0.11)],                        # undisturbed twice: done after 2
        "b": [(1.6, 0.16), (1.0, 0.10), (1.6, 0.16), (1.02, 0.102)],   # slow spells: measured again
        "c": [(1.6, 0.16)] * 6,                   # never undisturbed: the least disturbed, scaled
    }
    calls = []

    def fake_bench(path, client, settings, store, reference=None):
        name = Path(path).stem
        if name == "reference":
            return SimpleNamespace(latency_ms={"p50": 0.1}, reference_latency_ms={"p50": 0.1}, run_id=None)
        x, r = answers[name][sum(c == name for c in calls)]
        calls.append(name)
        return SimpleNamespace(latency_ms={"p50": x}, reference_latency_ms={"p50": r}, run_id=len(calls))

    monkeypatch.setattr(undisturbed, "bench", fake_bench)
    rule = undisturbed.Undisturbed(need=2, max_attempts=6)
    ref = undisturbed.Reference(tmp_path / "reference.onnx", "ref", rule)
    out = undisturbed.measure_undisturbed([tmp_path / f"{n}.onnx" for n in "abc"], None, None, None, ref)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "b", "c", "c", "c"]   # rounds, then the rest
    assert ref.nominal_ms == ref.fastest_ms == 0.1
    assert [m.attempts for m in out] == [2, 4, 6] and [m.undisturbed for m in out] == [2, 2, 0]
    assert out[0].ms == pytest.approx(1.0) and out[1].ms == pytest.approx(1.0)   # p50 x nominal / reference
    assert out[2].ms == pytest.approx(1.0) and out[2].raw_ms == pytest.approx(1.6)
