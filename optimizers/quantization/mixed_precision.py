"""Mixed precision: static INT8 everywhere except the layers whose quantization costs the most
accuracy per millisecond it saves, which stay float until an accuracy or fidelity threshold holds."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from optimizers.data.feeds import as_dataset
from optimizers.errors import DataMismatch, OptimizerError, UnknownOption
from optimizers.evaluation.evaluate import accuracy, compare_outputs, run_outputs
from optimizers.graph.model import ModelLike, default_output, load_model, require_float_weights
from optimizers.quantization.prepare import calibration_set, prepare
from optimizers.quantization.protection import protected_nodes
from optimizers.quantization.quantizer import (
    QuantizeConfig,
    calibrate_ranges,
    check_algorithm,
    quantize_qdq,
    static_op_types,
)
from optimizers.record import OptimizationRecord, OptimizedModel, write_result

log = logging.getLogger(__name__)

METRICS = ("cosine", "top1_agreement", "accuracy")


@dataclass
class LayerSensitivity:
    """One quantizable layer: the fidelity of the model with only it quantized, and its measured time."""

    node: str
    op_type: str
    cosine: float           # output cosine similarity with only this layer in INT8
    error: float            # 1 - cosine: what quantizing this layer alone costs
    time_ms: float | None   # measured float time on the device (profile), when given
    score: float            # error per millisecond (error when no times): higher stays float first
    prepared_name: str = ""  # the node's name in the pre-processed graph that quantize_static sees

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "prepared_name"}


class MixedPrecisionOptimizer:
    """`MixedPrecisionOptimizer(accuracy_threshold=0.99).optimize(model, calibration_data, eval_data)`.

    accuracy_threshold: with labels, quantized accuracy / float accuracy; without, the `metric`
    (cosine similarity by default) of the outputs against the float model's. sensitive_layers: node
    names always kept float. layer_times_ms: {node name: measured ms} from a device profile, so the
    layers that cost least time are the first kept in float. unknown_sensitive="drop" ignores
    sensitive_layers the pre-processed graph no longer has (fused away) instead of raising."""

    def __init__(self, accuracy_threshold: float = 0.99, sensitive_layers: list[str] | None = None,
                 metric: str = "cosine", algorithm: str = "minmax",
                 layer_times_ms: dict[str, float] | None = None, max_eval_samples: int = 64,
                 unknown_sensitive: str = "raise", **quant_options) -> None:
        if metric not in METRICS:
            raise UnknownOption("mixed-precision metric", metric, METRICS)
        if not 0 < accuracy_threshold <= 1:
            raise OptimizerError(f"accuracy_threshold must be in (0, 1] (a ratio), got {accuracy_threshold}")
        check_algorithm(algorithm)
        self.threshold = accuracy_threshold
        self.metric = metric
        self.sensitive = tuple(sensitive_layers or ())
        self.unknown_sensitive = unknown_sensitive
        self.times = dict(layer_times_ms or {})
        self.max_eval = max_eval_samples
        self.config = QuantizeConfig(method="int8", algorithm=algorithm, **quant_options)
        self.sensitivities: list[LayerSensitivity] = []

    def optimize(self, model: ModelLike, calibration_data, eval_data=None, labels=None,
                 output: str | Path | None = None, progress: Callable[[str], None] | None = None
                 ) -> OptimizedModel:
        """Quantize, then keep the most sensitive layers (per ms saved) in float until the threshold holds.
        `progress` receives one line per step (the sensitivity pass quantizes each layer alone)."""
        started = time.perf_counter()
        self._progress = progress or (lambda line: log.info("%s", line))
        self.sensitivities = []
        source = load_model(model, data=calibration_data)
        require_float_weights(source.proto, "mixed-precision quantization")
        settings = {**asdict(self.config), "accuracy_threshold": self.threshold, "metric": self.metric,
                    "sensitive_layers": list(self.sensitive), "layer_times_given": bool(self.times)}
        record = OptimizationRecord(technique="quantize:mixed-int8", settings=settings,
                                    source=str(source.path or "<ModelProto>"), source_digest=source.digest,
                                    source_size_bytes=source.size_bytes)
        source.note_export(record)
        calibration = calibration_set(calibration_data, source.proto, None, self.config, record)
        evaluation = calibration if eval_data is None else as_dataset(eval_data, source.proto, labels=labels)
        evaluation = evaluation.limit(self.max_eval)
        metric = "accuracy" if evaluation.labels is not None else self.metric
        with tempfile.TemporaryDirectory(prefix="edgefarm-mixed-") as tmp:
            work = _Work(Path(tmp), prepare(source, self.config, Path(tmp), record), evaluation, metric)
            found = (protected_nodes(work.proto, static_op_types(self.config))
                     if self.config.protect_attention_masks else {})
            self._protected = [n for names in found.values() for n in names]   # found once, not per layer
            sensitive = self._sensitive_names(work.proto, source, record)
            work.ranges = calibrate_ranges(work.prepared, calibration.feeds, self.config, work.dir)
            layers = quantizable_layers(work.proto, self.config.op_types)
            keep, chosen, value = self._choose(work, layers, sensitive, record)
            record.metrics[metric] = round(value, 6)
            record.metrics["layers_quantizable"] = len(layers)
            record.metrics["layers_kept_float"] = len(keep)
            record.settings["kept_float"] = [self._display.get(k, k) for k in keep]
            record.changes["layers quantized"] = len(layers) - len(keep)
            record.changes["layers kept in float"] = len(keep)
            if self.sensitivities:
                record.metrics["sensitivity"] = [s.to_json() for s in self.sensitivities]
            out = default_output(source, "mixed-int8", output)
            result = write_result(onnx.load(str(chosen)), out, record, started)
        log.info("mixed precision: %d of %d layers kept float, %s=%.4f", len(keep), len(layers), metric, value)
        return result

    def _sensitive_names(self, prepared, source, record: OptimizationRecord) -> list[str]:
        """sensitive_layers as the pre-processed graph names them. ORT's pre-processing renames fused nodes
        (e.g. 'fc2' -> 'fc2/MatMulAddFusion'): users and device profiles speak of the original names,
        quantize_static of the new ones."""
        source_names = {n.name for n in source.proto.graph.node}
        self._display = {n.name: _original_name(n.name, source_names) for n in prepared.graph.node}
        by_user = {**{v: k for k, v in self._display.items()}, **{k: k for k in self._display}}
        unknown = [n for n in self.sensitive if n not in by_user]
        if unknown and self.unknown_sensitive == "drop":
            record.notes.append(f"not in the pre-processed graph, so not kept float: {', '.join(unknown)}")
            unknown = []
        if unknown:
            raise DataMismatch(f"sensitive_layers names {', '.join(map(repr, unknown))}, which the model does "
                               f"not have; its layers are e.g. {', '.join(sorted(source_names)[:8])}")
        return [by_user[n] for n in self.sensitive if n in by_user]

    def _quantize(self, work: _Work, keep_float: list[str], tag: str) -> Path:
        out = work.dir / f"{tag}.onnx"
        cfg = QuantizeConfig(**{**asdict(self.config), "exclude_nodes": tuple(keep_float)})
        quantize_qdq(work.prepared, out, cfg, work.ranges, protected=self._protected)
        return out

    def _choose(self, work: _Work, layers, sensitive: list[str], record: OptimizationRecord
                ) -> tuple[list[str], Path, float]:
        """Full INT8 when it meets the threshold; else the fewest float layers that do, by sensitivity."""
        full_path = self._quantize(work, sensitive, "full")
        full = work.score(full_path)
        record.metrics["full_int8_" + work.metric] = round(full, 6)
        self._progress(f"full INT8: {work.metric} {full:.4f} (threshold {self.threshold})")
        if full >= self.threshold:
            return list(sensitive), full_path, full
        self.sensitivities = self._sensitivity(layers, work.prepared, work.ranges, work.dir, work.score)
        ranked = [s.prepared_name for s in self.sensitivities if s.prepared_name not in sensitive]
        keep, chosen, value = self._search(sensitive, ranked, lambda k, tag: self._quantize(work, k, tag),
                                           work.score)
        if chosen is None:
            best = self.sensitivities[:5]
            raise OptimizerError(
                f"no mixed-precision model reaches {work.metric} >= {self.threshold}: full INT8 gives {full:.4f} "
                f"and even keeping all {len(ranked)} layers in float misses it; the most sensitive layers "
                f"are {', '.join(s.node for s in best)}; lower the threshold or use fp16")
        return keep, chosen, value

    def _sensitivity(self, layers, prepared, ranges, work, score) -> list[LayerSensitivity]:
        """Quantize one layer at a time (ranges reused from one calibration) and measure the damage."""
        out = []
        for i, (name, op) in enumerate(layers):
            path = work / f"one-{i}.onnx"
            quantize_qdq(prepared, path, self.config, ranges, nodes_to_quantize=[name], protected=self._protected)
            value = score(path)
            self._progress(f"sensitivity {i + 1}/{len(layers)}: {self._display.get(name, name)} alone in INT8 "
                           f"-> {value:.4f}")
            error = max(0.0, 1.0 - value)
            shown = self._display.get(name, name)
            ms = self.times.get(shown, self.times.get(name))
            out.append(LayerSensitivity(shown, op, value, error, ms,
                                        error / max(ms, 1e-3) if ms is not None else error, name))
            path.unlink()
        if self.times:
            missing = [s.node for s in out if s.time_ms is None]
            if missing:  # layers with no measured time rank as if they cost the median time
                known = sorted(s.time_ms for s in out if s.time_ms is not None) or [1.0]
                median = known[len(known) // 2]
                for s in out:
                    if s.time_ms is None:
                        s.score = s.error / max(median, 1e-3)
        return sorted(out, key=lambda s: -s.score)

    def _search(self, sensitive: list[str], ranked: list[str], quantize, score
                ) -> tuple[list[str], Path | None, float]:
        """Smallest k such that keeping the top-k ranked layers (plus sensitive ones) float meets the
        threshold, by bisection (fidelity grows with k, nearly monotonically)."""
        lo, hi = 1, len(ranked)
        best: tuple[list[str], Path | None, float] = ([], None, -math.inf)
        while lo <= hi:
            k = (lo + hi) // 2
            keep = list(sensitive) + ranked[:k]
            path = quantize(keep, f"keep-{k}")
            value = score(path)
            self._progress(f"search: {len(keep)} layers in float -> {value:.4f}")
            if value >= self.threshold:
                best = (keep, path, value)
                hi = k - 1
            else:
                lo = k + 1
        return best


class _Work:
    """One optimize() call's pre-processed model, calibrated ranges and scoring against the float outputs."""

    def __init__(self, folder: Path, prepared: Path, evaluation, metric: str) -> None:
        self.dir, self.prepared, self.evaluation, self.metric = folder, prepared, evaluation, metric
        self.proto = onnx.load(str(prepared))
        self.ranges = None
        self.reference = run_outputs(self.proto, evaluation)
        self.float_acc = accuracy(self.reference, evaluation.labels) if metric == "accuracy" else None

    def score(self, path: Path) -> float:
        """The quantized model's accuracy ratio or fidelity metric against the float model."""
        outs = run_outputs(onnx.load(str(path)), self.evaluation)
        if self.metric == "accuracy":
            return accuracy(outs, self.evaluation.labels) / max(self.float_acc, 1e-9)
        value = getattr(compare_outputs(self.reference, outs), self.metric)
        if value is None:
            raise DataMismatch("top1_agreement needs a classifier output [N, classes]; use metric='cosine'")
        return value


def _original_name(name: str, source_names: set[str]) -> str:
    """The source graph's name of a node ONNX Runtime's optimizer renamed ('X/MatMulAddFusion' -> 'X')."""
    base = name.rsplit("/", 1)[0] if "/" in name else name
    return base if name not in source_names and base in source_names else name


def quantizable_layers(model, op_types) -> list[tuple[str, str]]:
    """(name, op_type) of the nodes static INT8 would quantize that hold a constant weight."""
    inits = {i.name for i in model.graph.initializer}
    ops = set(op_types) if op_types else {"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather"}
    weighted = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather"} & ops
    return [(n.name, n.op_type) for n in model.graph.node
            if n.op_type in weighted and n.name and any(i in inits for i in n.input)]
