"""Constraints: failures that say by how much, and the closest candidates with the one relaxation that
would admit each."""

from __future__ import annotations

from dataclasses import replace

from controller.optimization.constraints import Constraints
from controller.optimization.rows import CandidateRow


def test_constraint_failures_say_by_how_much():
    c = Constraints(max_latency_ms=2.0, max_size_mb=1.0, max_accuracy_drop=1.0)
    fails = c.failures(CandidateRow("q", latency_ms={"p50": 2.5}, size_bytes=1_500_000, accuracy=0.95),
                       CandidateRow("baseline", accuracy=0.97))
    assert fails == ["p50 2.500 ms > --max-latency-ms 2 (by 0.500 ms)", "size 1.500 MB > --max-size-mb 1 "
                     "(by 0.500 MB)", "accuracy drop 2.00 points > --max-accuracy-drop 1 (by 1.00)"]
    assert Constraints().resolved(labelled=True).max_accuracy_drop == 1.0
    assert Constraints().resolved(labelled=False).min_fidelity == 0.99


def test_closest_names_the_fast_candidate_and_the_one_relaxation_that_admits_it():
    from controller.optimization.constraints import closest

    c = Constraints(max_accuracy_drop=1.0, max_latency_ms=5.0)
    base = CandidateRow("baseline", accuracy=0.9747, latency_ms={"p50": 6.0})
    rows = [  # in plan order: the slow ones first, as in the demo run that buried distill
        CandidateRow("fused", latency_ms={"p50": 8.7}, accuracy=0.9747, speedup=0.69,
                     speed_failure="slower than the baseline (0.69x): never chosen", reason="slower than the baseline"),
        CandidateRow("int8-minmax", latency_ms={"p50": 5.5}, accuracy=0.90, speedup=1.09, reason="two constraints"),
        CandidateRow("distill", latency_ms={"p50": 1.2}, accuracy=0.952, speedup=5.03, reason="accuracy"),
    ]
    near = closest(rows, c, base)
    # the drop is 2.2700000000000053 points: 2.27 would still refuse it, 2.28 admits it
    assert near[0].startswith("distill: 5.03x faster; allow --max-accuracy-drop 2.28 to choose it (accuracy drop 2.27")
    assert near[1].startswith("int8-minmax: 1.09x faster; allow --max-latency-ms 5.5 and --max-accuracy-drop 7.47")
    assert near[2].startswith("fused (slower")
    for row in rows[1:]:   # each suggested value really admits the candidate
        admitted = replace(c, **{r.flag[2:].replace("-", "_"): r.value for r in c.relaxations(row, base)})
        assert not admitted.failures(row, base)


def test_a_metric_may_set_its_default_drop():
    from optimizers.evaluation.metrics import resolve_metric

    assert Constraints().resolved(labelled=False, metric=resolve_metric("det-agreement")).max_metric_drop == 0.1
    assert Constraints().resolved(labelled=False, metric=resolve_metric("top1")).max_metric_drop == 0.01
