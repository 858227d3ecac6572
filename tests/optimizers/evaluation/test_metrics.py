"""Task metrics: the built-ins on hand-computed cases, the user's own, and one clear sentence for every
spec or result that cannot be used."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optimizers import METRICS, Metric, MetricError, OptimizerError, resolve_metric
from optimizers.errors import DataMismatch

LOGITS = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)  # argmax 1 0 1 0
REF_LOGITS = np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.3, 0.7]], np.float32)  # argmax 1 1 0 1
# two samples of 2x2 probability maps: sample 0 ref on {(0,0), (1,0)}, cand on {(0,0), (0,1)}; sample 1
# ref and cand both on (1,1) only
REF_MAP = np.array([[[0.9, 0.1], [0.6, 0.2]], [[0.0, 0.0], [0.0, 0.8]]], np.float32)
CAND_MAP = np.array([[[0.7, 0.6], [0.4, 0.1]], [[0.0, 0.0], [0.0, 0.9]]], np.float32)
EMPTY = np.zeros((3, 4, 4), np.float32)
NOISE = np.full((2, 3), 7.0, np.float32)  # a second output the built-ins must ignore


@pytest.mark.parametrize(("spec", "reference", "candidate", "labels", "expected"), [
    # 3 of 4 candidate argmaxes [1 0 1 0] match labels [1 1 1 0]
    ("top1", {"y": REF_LOGITS}, {"y": LOGITS}, np.array([1, 1, 1, 0]), 0.75),
    # labels as a float column are fine; only the first output counts
    ("top1", {"y": REF_LOGITS, "z": NOISE}, {"y": LOGITS, "z": -NOISE}, np.array([[1.0], [0.0], [1.0], [0.0]]), 1.0),
    # no labels: agreement with the reference argmax [1 1 0 1] -> only row 0 agrees
    ("top1", {"y": REF_LOGITS}, {"y": LOGITS}, None, 0.25),
    # [N, 1, C] is reshaped to [N, C]
    ("top1", {"y": REF_LOGITS[:, None, :]}, {"y": REF_LOGITS[:, None, :]}, None, 1.0),
    # T = 0.5: intersection {s0 (0,0), s1 (1,1)} = 2, union {s0 (0,0),(1,0),(0,1), s1 (1,1)} = 4
    ("mask-iou@0.5", {"m": REF_MAP, "z": NOISE}, {"m": CAND_MAP, "z": -NOISE}, None, 0.5),
    # T = 0.3: cand also on s0 (1,0) -> intersection 3, union 4
    ("mask-iou@0.3", {"m": REF_MAP}, {"m": CAND_MAP}, None, 0.75),
    # T = 0.85: ref on s0 (0,0) only, cand on s1 (1,1) only -> 0 / 2
    ("mask-iou@0.85", {"m": REF_MAP}, {"m": CAND_MAP}, None, 0.0),
    # a value equal to T is on: ref s0 (0,0)=0.9, s1 (1,1)=0.8; cand s1 (1,1)=0.9 -> 1 / 2 at T = 0.8
    ("mask-iou@0.8", {"m": REF_MAP}, {"m": CAND_MAP}, None, 0.5),
    # nothing detected by either model on any sample: the maps agree
    ("mask-iou@0.5", {"m": EMPTY}, {"m": EMPTY + 0.01}, np.array([0, 1, 2]), 1.0),
])
def test_builtin_metrics(spec, reference, candidate, labels, expected):
    metric = resolve_metric(spec)
    assert isinstance(metric, Metric) and metric.name == spec
    assert metric(reference, candidate, labels) == pytest.approx(expected, abs=1e-12)


def test_the_table_and_the_mask_threshold():
    assert set(METRICS) == {"top1", "mask-iou", "det-agreement"}
    assert resolve_metric("mask-iou@0.25").threshold == 0.25
    assert resolve_metric(" top1 ").name == "top1"


def test_builtins_refuse_outputs_they_cannot_score():
    with pytest.raises(DataMismatch, match=r"4 labels for 3 rows"):
        resolve_metric("top1")({"y": LOGITS[:3]}, {"y": LOGITS[:3]}, np.array([0, 1, 1, 0]))
    with pytest.raises(DataMismatch, match=r"at least 2 classes"):
        resolve_metric("top1")({"y": np.ones((4, 1))}, {"y": np.ones((4, 1))}, None)
    with pytest.raises(DataMismatch, match=r"shape"):
        resolve_metric("mask-iou@0.5")({"m": REF_MAP}, {"m": CAND_MAP[:1]}, None)


USER_METRICS = '''
import numpy as np

THRESHOLD = 0.5

def mean_abs_agreement(reference, candidate, labels=None):
    """1 - mean |reference - candidate| of the first output."""
    r, c = next(iter(reference.values())), next(iter(candidate.values()))
    return 1.0 - float(np.mean(np.abs(r - c)))

def two_args(reference, candidate):
    return 1.0

def broken(reference, candidate, labels):
    raise KeyError("logits")
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "edgefarm_user_metrics_t.py"
    path.write_text(USER_METRICS)
    return path


def test_user_function_from_a_file_and_from_a_module(user_file, monkeypatch):
    ref, cand = {"y": np.array([[1.0, 2.0]])}, {"y": np.array([[1.5, 2.0]])}
    from_file = resolve_metric(f"{user_file}:mean_abs_agreement")
    assert from_file(ref, cand, None) == pytest.approx(0.75)
    assert from_file.description.startswith("1 - mean")
    monkeypatch.syspath_prepend(str(user_file.parent))
    from_module = resolve_metric("edgefarm_user_metrics_t:mean_abs_agreement")
    assert from_module.name == "edgefarm_user_metrics_t:mean_abs_agreement"
    assert from_module(ref, cand, None) == pytest.approx(0.75)


def test_a_callable_and_a_metric_pass_through():
    def f1(reference, candidate, labels):
        return np.float32(0.5)

    metric = resolve_metric(f1)
    assert metric({"y": LOGITS}, {"y": LOGITS}, None) == 0.5 and type(metric({}, {}, None)) is float
    top1 = resolve_metric("top1")
    assert resolve_metric(top1) is top1
    assert resolve_metric(lambda r, c, labels: 1)({}, {}, None) == 1.0


def _one_sentence(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message
    assert not re.search(r"[.!?]\s+[A-Z]", message), message  # no second sentence
    assert len(message) < 300


@pytest.mark.parametrize(("spec", "message"), [
    ("top5", ("unknown metric 'top5'; use one of top1, mask-iou@T with T in (0, 1) such as mask-iou@0.5, "
             "det-agreement (or det-agreement@0.5:0.95), or your own function as module:function or "
             "path/to/file.py:function")),
    ("det-agreement@0.7", "metric 'det-agreement@0.7': '0.7' is not one of 0.5, 0.5:0.95, score=S, min-score=S"),
    ("", "unknown metric ''; use one of top1"),
    ("mask-iou@abc", ("metric 'mask-iou@abc' has threshold 'abc', which is not a number in (0, 1); "
                     "write e.g. mask-iou@0.5")),
    ("mask-iou@1.5", "metric 'mask-iou@1.5' has threshold '1.5', which is not a number in (0, 1)"),
    ("mask-iou@0", "metric 'mask-iou@0' has threshold '0', which is not a number in (0, 1)"),
    ("mask-iou@nan", "metric 'mask-iou@nan' has threshold 'nan', which is not a number in (0, 1)"),
    ("mask-iou", "metric 'mask-iou' needs a threshold; write mask-iou@T with T in (0, 1), such as mask-iou@0.5"),
    ("top1@3", "metric 'top1@3' takes no parameter after '@'; write top1"),
    ("no_such_pkg_xyz.metrics:f1", ("metric 'no_such_pkg_xyz.metrics:f1': cannot import module "
                                   "'no_such_pkg_xyz.metrics' (ModuleNotFoundError: No module named "
                                   "'no_such_pkg_xyz'); install it or put it on PYTHONPATH, or give a file as "
                                   "path/to/file.py:function")),
    ("json:no_such", "metric 'json:no_such': 'json' has no attribute 'no_such' (it defines "),
    ("math:pi", ("metric 'math:pi' is a float, not a function; name a function (reference, candidate, labels) "
                "-> float")),
    ("json:1bad", "metric 'json:1bad' names '1bad', which is not a Python name"),
    ("missing/metrics.py:f1", ("metric 'missing/metrics.py:f1' names the file 'missing/metrics.py', which does "
                              "not exist; give an existing file as path/to/file.py:function")),
    (42, "a metric must be a name or a callable, not int; use one of top1"),
])
def test_bad_specs_give_one_clear_sentence(spec, message):
    with pytest.raises(MetricError) as info:
        resolve_metric(spec)
    assert isinstance(info.value, OptimizerError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(message)
    _one_sentence(str(info.value))


def test_bad_user_files_and_functions(user_file, tmp_path):
    bad = tmp_path / "bad_metrics.py"
    bad.write_text("def f1(reference, candidate, labels)\n    return 1\n")
    cases = [
        (f"{bad}:f1", f"metric '{bad}:f1': the file '{bad}' fails to import (SyntaxError: "),
        (f"{user_file}:nothing", (f"metric '{user_file}:nothing': '{user_file}' has no attribute 'nothing' "
                                 "(it defines broken, mean_abs_agreement, two_args); name a function it defines")),
        (f"{user_file}:THRESHOLD", f"metric '{user_file}:THRESHOLD' is a float, not a function"),
        (f"{user_file}:two_args", (f"metric '{user_file}:two_args' has the signature (reference, candidate), but a "
                                  "metric is called as f(reference, candidate, labels); give it those three")),
    ]
    for spec, message in cases:
        with pytest.raises(MetricError) as info:
            resolve_metric(spec)
        assert str(info.value).startswith(message), str(info.value)
        _one_sentence(str(info.value).replace(str(tmp_path), "TMP"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None, "0.9", True, np.array([0.5, 0.5]), 1 + 2j])
def test_a_metric_must_return_a_finite_real_number(value):
    def odd(reference, candidate, labels):
        return value

    with pytest.raises(MetricError) as info:
        resolve_metric(odd)({}, {}, None)
    assert str(info.value).startswith("metric 'test_a_metric_must_return_a_finite_real_number.<locals>.odd' "
                                      "returned ")
    assert "not a finite real number; make it return a float such as 0.93" in str(info.value)
    _one_sentence(str(info.value))


def test_an_exception_in_the_users_metric_names_it(user_file):
    metric = resolve_metric(f"{user_file}:broken")
    with pytest.raises(MetricError) as info:
        metric({}, {}, None)
    assert str(info.value) == f"metric '{user_file}:broken' raised KeyError: 'logits'; fix that function"
    assert isinstance(info.value.__cause__, KeyError)
