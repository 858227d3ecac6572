"""Task metrics, higher is better: `metric(reference, candidate, labels) -> float`, where reference and
candidate map output name -> array stacked over samples along axis 0 (what the controller holds) and
labels is None or one label per row. Built-ins live in METRICS; `resolve_metric` also takes
`module:function`, `path/to/file.py:function` or a Python callable.

    top1          classifiers: accuracy of the first output's argmax against labels, or without labels
                  agreement with the reference's argmax
    mask-iou@T    dense probability maps: IoU of the first output thresholded at T (value >= T), pooled
                  over all samples; 1.0 when neither model marks anything
    det-agreement detectors (YOLOv8- and YOLOX-style heads): COCO mAP@0.5 of the candidate's detections with
                  the reference model's as ground truth, by pycocotools; det-agreement@0.5:0.95 for the
                  stricter mAP@0.5:0.95 (detections.py)"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from optimizers.errors import DataMismatch, OptimizerError
from optimizers.evaluation.detections import DecodeOptions, agreement

Outputs = Mapping[str, np.ndarray]
MetricFn = Callable[[Outputs, Outputs, "np.ndarray | None"], float]

USAGE = ("use one of top1, mask-iou@T with T in (0, 1) such as mask-iou@0.5, det-agreement (or "
         "det-agreement@0.5:0.95), or your own function as module:function or path/to/file.py:function")


class MetricError(OptimizerError, ValueError):
    """A metric spec that cannot be resolved, or a metric that returned something other than a number."""


class Metric(ABC):
    """One task metric; calling it checks the inputs are there and that the result is a finite number."""

    name: str = ""
    description: str = ""

    @classmethod
    def from_spec(cls, arg: str | None, spec: str) -> Metric:
        """The metric for `name@arg` (arg None without '@'); built-ins without a parameter refuse one."""
        if arg is not None:
            raise MetricError(f"metric {spec!r} takes no parameter after '@'; write {cls.name}")
        return cls()

    @abstractmethod
    def compute(self, reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> float:
        """The raw score."""

    def __call__(self, reference: Outputs, candidate: Outputs, labels: np.ndarray | None = None) -> float:
        return finite(self.name, self.compute(reference, candidate, labels))

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


def finite(name: str, value: object) -> float:
    """`value` as a float, or MetricError when it is not a finite real number."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        shown = repr(value) if len(repr(value)) <= 60 else f"a {type(value).__name__}"
        raise MetricError(f"metric {name!r} returned {shown}, not a finite real number; "
                          "make it return a float such as 0.93")
    return float(value)


def _first(outputs: Outputs, which: str, metric: str) -> np.ndarray:
    if not outputs:
        raise DataMismatch(f"metric {metric!r} got no {which} outputs; pass a dict of output name -> array")
    return np.asarray(next(iter(outputs.values())))


def _rows(array: np.ndarray, metric: str, which: str) -> np.ndarray:
    """[N, ...] -> [N, C] with C > 1, the shape argmax needs."""
    if array.ndim == 0 or array.size == 0:
        raise DataMismatch(f"metric {metric!r} needs a [N, classes] {which} output, got shape {array.shape}")
    rows = array.reshape(array.shape[0], -1)
    if rows.shape[1] < 2:
        raise DataMismatch(f"metric {metric!r} needs a [N, classes] {which} output with at least 2 classes, "
                           f"got shape {array.shape}")
    return rows


class Top1(Metric):
    name = "top1"
    description = "classifiers: top-1 accuracy of the first output with labels, top-1 agreement without"

    def compute(self, reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> float:
        preds = _rows(_first(candidate, "candidate", self.name), self.name, "candidate").argmax(1)
        if labels is None:
            ref = _rows(_first(reference, "reference", self.name), self.name, "reference").argmax(1)
            if len(ref) != len(preds):
                raise DataMismatch(f"metric 'top1' got {len(ref)} reference rows and {len(preds)} candidate rows; "
                                   "give outputs of the same samples")
            return float(np.mean(preds == ref))
        truth = np.asarray(labels).ravel()
        if len(truth) != len(preds):
            raise DataMismatch(f"metric 'top1' got {len(truth)} labels for {len(preds)} rows; give one label per row")
        return float(np.mean(preds == truth.astype(preds.dtype)))


class MaskIoU(Metric):
    name = "mask-iou"
    description = "dense probability maps: IoU of the first output thresholded at T, pooled over samples"

    def __init__(self, threshold: float) -> None:
        if not (isinstance(threshold, numbers.Real) and 0 < threshold < 1):
            raise MetricError(f"mask-iou threshold {threshold!r} is not a number in (0, 1); use e.g. 0.5")
        self.threshold = float(threshold)
        self.name = f"mask-iou@{self.threshold!r}"

    @classmethod
    def from_spec(cls, arg: str | None, spec: str) -> Metric:
        if arg is None:
            raise MetricError(f"metric {spec!r} needs a threshold; write mask-iou@T with T in (0, 1), "
                              "such as mask-iou@0.5")
        try:
            t = float(arg)
        except ValueError:
            t = math.nan
        if not 0 < t < 1:  # also refuses nan
            raise MetricError(f"metric {spec!r} has threshold {arg!r}, which is not a number in (0, 1); "
                              "write e.g. mask-iou@0.5")
        return cls(t)

    def compute(self, reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> float:
        ref = _first(reference, "reference", self.name)
        cand = _first(candidate, "candidate", self.name)
        if ref.shape != cand.shape:
            raise DataMismatch(f"metric {self.name!r} got a reference map of shape {ref.shape} and a candidate "
                               f"map of shape {cand.shape}; compare outputs of the same samples")
        r, c = ref >= self.threshold, cand >= self.threshold
        union = int(np.count_nonzero(r | c))
        return 1.0 if union == 0 else int(np.count_nonzero(r & c)) / union


class DetAgreement(Metric):
    name = "det-agreement"
    description = ("detectors: COCO mAP@0.5 of the first output's detections, the reference model's taken as "
                   "ground truth (no labels needed; labels given for classes are not used)")

    # the default --max-metric-drop: a candidate must keep mAP >= 0.90 of the reference's own detections (an
    # INT8 detector typically moves some boxes by a few pixels; 0.01 would refuse nearly every one)
    default_drop = 0.10

    def __init__(self, strict: bool = False, options: DecodeOptions | None = None) -> None:
        self.strict = strict
        self.options = options or DecodeOptions()
        self.name = "det-agreement@0.5:0.95" if strict else "det-agreement"

    @classmethod
    def from_spec(cls, arg: str | None, spec: str) -> Metric:
        """det-agreement[@ITEM,...]: ITEM is 0.5 (the default) or 0.5:0.95, score=S (the reference's boxes
        taken as truth, default 0.25), min-score=S (the candidate's kept, default 0.001), nms=IOU (default
        0.45), decoder=module:function (one sample's output -> (cxcywh [N, 4], score [N], class [N]))."""
        strict, fields = False, {}
        names = {"score": "truth_score", "min-score": "min_score", "nms": "nms_iou"}
        for item in [] if arg is None else [i.strip() for i in arg.split(",") if i.strip()]:
            key, eq, value = item.partition("=")
            if not eq and item in ("0.5", "0.5:0.95"):
                strict = item == "0.5:0.95"
            elif key in names:
                try:
                    number = float(value)
                except ValueError:
                    number = -1.0
                if not 0 <= number <= 1:
                    raise MetricError(f"metric {spec!r}: {key}={value!r} is not a number in [0, 1]")
                fields[names[key]] = number
            elif key == "decoder":
                fields["decoder"] = named_function(value, spec)
                if not callable(fields["decoder"]):
                    raise MetricError(f"metric {spec!r}: decoder {value!r} is not a function")
            else:
                raise MetricError(f"metric {spec!r}: {item!r} is not one of 0.5, 0.5:0.95, score=S, "
                                  "min-score=S, nms=IOU, decoder=module:function")
        return cls(strict=strict, options=DecodeOptions(**fields))

    def compute(self, reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> float:
        ref = _first(reference, "reference", self.name)
        cand = _first(candidate, "candidate", self.name)
        at_50, at_50_95 = agreement(ref, cand, self.options)
        return at_50_95 if self.strict else at_50


class FunctionMetric(Metric):
    """The user's function `(reference, candidate, labels) -> float`."""

    def __init__(self, fn: Callable, name: str) -> None:
        self.fn = fn
        self.name = name
        self.description = (inspect.getdoc(fn) or "").split("\n")[0]

    def compute(self, reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> float:
        try:
            return self.fn(reference, candidate, labels)
        except Exception as exc:
            raise MetricError(f"metric {self.name!r} raised {type(exc).__name__}: {_line(exc)}; "
                              "fix that function") from exc


METRICS: dict[str, type[Metric]] = {m.name: m for m in (Top1, MaskIoU, DetAgreement)}


def _line(exc: BaseException) -> str:
    """An exception's message as one short clause (first line, no trailing period)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


def _load_module(where: str, spec: str):
    looks_like_file = where.endswith(".py") or "/" in where or "\\" in where
    if looks_like_file:
        path = Path(where).expanduser()
        if not path.is_file():
            raise MetricError(f"metric {spec!r} names the file {where!r}, which does not exist; "
                              "give an existing file as path/to/file.py:function")
        mod_name = "_edgefarm_metric_" + re.sub(r"\W", "_", str(path.resolve()))
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise MetricError(f"metric {spec!r} names {where!r}, which Python cannot load as a module; "
                              "give a .py file as path/to/file.py:function")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise MetricError(f"metric {spec!r}: the file {where!r} fails to import ({type(exc).__name__}: "
                              f"{_line(exc)}); fix the file") from exc
        return module
    try:
        return importlib.import_module(where)
    except Exception as exc:
        raise MetricError(f"metric {spec!r}: cannot import module {where!r} ({type(exc).__name__}: {_line(exc)}); "
                          "install it or put it on PYTHONPATH, or give a file as path/to/file.py:function") from exc


def _check_signature(fn: Callable, name: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: trust them
        return
    try:
        sig.bind(None, None, None)
    except TypeError:
        raise MetricError(f"metric {name!r} has the signature {sig}, but a metric is called as "
                          "f(reference, candidate, labels); give it those three parameters") from None


def _from_function(fn: object, name: str) -> Metric:
    if not callable(fn):
        raise MetricError(f"metric {name!r} is a {type(fn).__name__}, not a function; name a function "
                          "(reference, candidate, labels) -> float")
    _check_signature(fn, name)
    return FunctionMetric(fn, name)


def resolve_metric(spec: str | Metric | MetricFn) -> Metric:
    """A Metric from a built-in name (`top1`, `mask-iou@0.5`), `module:function`,
    `path/to/file.py:function`, a Metric, or a callable (reference, candidate, labels) -> float."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, type) and issubclass(spec, Metric):
        return spec.from_spec(None, spec.name)
    if not isinstance(spec, str):
        if callable(spec):
            return _from_function(spec, getattr(spec, "__qualname__", None) or type(spec).__name__)
        raise MetricError(f"a metric must be a name or a callable, not {type(spec).__name__}; {USAGE}")
    text = spec.strip()
    base, at, arg = text.partition("@")
    if base in METRICS:
        return METRICS[base].from_spec(arg if at else None, text)
    if ":" not in text:
        raise MetricError(f"unknown metric {spec!r}; {USAGE}")
    return _from_function(named_function(text, text), text)


def named_function(text: str, spec: str):
    """The object `module:attr` or `path/to/file.py:attr` names (a MetricError naming `spec` otherwise)."""
    where, colon, attr = text.rpartition(":")
    if not colon or not where or not attr:
        raise MetricError(f"{spec!r}: write module:function or path/to/file.py:function")
    if not attr.isidentifier():
        raise MetricError(f"metric {spec!r} names {attr!r}, which is not a Python name; "
                          "write module:function with the function's name after the colon")
    module = _load_module(where, text)
    if not hasattr(module, attr):
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        hint = f"it defines {', '.join(defined[:8])}" if defined else "it defines no public functions"
        raise MetricError(f"metric {spec!r}: {where!r} has no attribute {attr!r} ({hint}); "
                          "name a function it defines after the colon")
    return getattr(module, attr)


__all__ = ["METRICS", "DetAgreement", "FunctionMetric", "MaskIoU", "Metric", "MetricError", "Top1", "finite", "resolve_metric"]
