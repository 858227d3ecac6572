"""Static INT8 on ONNX Runtime's quantizer: activation ranges from its calibrators (with our entropy
histogram), then quantize_static in QDQ format with those ranges and the protected nodes kept float."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from optimizers.errors import OptimizerError
from optimizers.quantization.config import ENTROPY_BINS, QuantizeConfig, static_op_types
from optimizers.quantization.protection import protected_nodes

log = logging.getLogger(__name__)


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "kl": CalibrationMethod.Entropy,
             "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    return table[name]


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


class FeedReader:
    """ONNX Runtime CalibrationDataReader over a list of feed dicts (rewindable)."""

    def __new__(cls, feeds):
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(feeds)

            def get_next(self):
                return next(self._it, None)

            def rewind(self) -> None:
                self._it = iter(feeds)

        return Reader()


def calibrate_ranges(prepared: Path, feeds: list[dict], cfg: QuantizeConfig, workdir: Path) -> Path:
    """Activation ranges from ONNX Runtime's calibrator, saved as its calibration cache (JSON).

    For entropy (KL) we set the histogram to 2048 bins: quantize_static builds that calibrator with
    128 bins and 128 quantized bins, which leaves a single threshold candidate (the full range, i.e.
    MinMax); 2048/128 is the TensorRT recipe the calibrator implements.

    No histogram holds a tensor with -inf or inf in it (ORT's raises "supplied range ... is not finite"),
    so for KL and percentile a MinMax pass finds those tensors first; they are left out of the histograms
    and keep their MinMax range in the cache, where quantize_qdq finds them unbounded (their ops stay
    float)."""
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    extra: dict = {}
    if cfg.algorithm in ("kl", "entropy"):
        extra = {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    elif cfg.algorithm == "percentile":
        extra = {"percentile": cfg.percentile}
    unbounded = {}
    if cfg.algorithm != "minmax":
        bounds = _collect(prepared, feeds, cfg, workdir, "minmax", {})
        unbounded = {k: v for k, v in bounds.items() if not _finite(v)}
    ranges = _collect(prepared, feeds, cfg, workdir, cfg.algorithm, extra, skip=set(unbounded))
    if unbounded:
        ranges = TensorsData(ranges.calibration_method, {**dict(ranges.items()), **unbounded})
    cache = workdir / f"ranges-{cfg.algorithm}.json"
    save_tensors_data(ranges, cache)
    return cache


def _collect(prepared: Path, feeds: list[dict], cfg: QuantizeConfig, workdir: Path, algorithm: str,
             extra: dict, skip: set[str] = frozenset()):
    """One calibrator's pass over the feeds: its TensorsData, without the `skip` tensors."""
    from onnxruntime.quantization.calibrate import create_calibrator

    from optimizers.quantization.entropy import entropy_threshold

    calibrator = create_calibrator(prepared, list(cfg.op_types) or None,
                                   augmented_model_path=str(workdir / f"augmented-{algorithm}.onnx"),
                                   calibrate_method=_calibration_method(algorithm),
                                   providers=["CPUExecutionProvider"], extra_options=extra)
    if skip:   # a histogram calibrator's tensors (MinMax, which needs no skipping, names them otherwise)
        calibrator.tensors_to_calibrate = set(calibrator.tensors_to_calibrate) - skip
    with contextlib.redirect_stdout(io.StringIO()) as chatter:  # the calibrators print() their progress
        calibrator.collect_data(FeedReader(feeds))
        if algorithm in ("kl", "entropy"):   # ORT's arithmetic, its Python loops done by numpy (entropy.py)
            calibrator.collector.get_entropy_threshold = entropy_threshold
        ranges = calibrator.compute_data()
    log.debug("calibration (%s): %s", algorithm, chatter.getvalue().strip())
    return ranges


def _finite(value) -> bool:
    return bool(np.all(np.isfinite(np.asarray(value.range_value, dtype=float))))


def unbounded_tensors(ranges: Path) -> set[str]:
    """Tensors whose calibrated range is not finite (an attention mask or a Where filled with -inf): no
    INT8 scale can hold them (ONNX Runtime's quantizer would store scale inf and a NaN zero point)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(ranges)
    return {name for name in data if not _finite(data[name])}


def _finite_ranges(ranges: Path, unbounded: set[str]) -> Path:
    """The calibration cache without the unbounded tensors (written beside it)."""
    payload = json.loads(ranges.read_text())
    payload["data"] = {k: v for k, v in payload["data"].items() if k not in unbounded}
    out = ranges.with_name(ranges.stem + "-finite.json")
    out.write_text(json.dumps(payload))
    return out


def check_scales(path: Path) -> None:
    """A QuantizeLinear/DequantizeLinear with a scale that is not finite and positive makes the model
    compute garbage: an OptimizerError naming the tensors, rather than a broken file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    bad = sorted({n.input[0] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and len(n.input) > 1 and n.input[1] in inits
                  and not np.all(np.isfinite(a := numpy_helper.to_array(inits[n.input[1]])) & (a > 0))})
    if bad:
        raise OptimizerError(f"static INT8 gave {len(bad)} tensor(s) a scale that is not finite and positive "
                             f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); keep the nodes around"
                             " them float with exclude_nodes (farmctl quantize --exclude NODE)")


def quantize_qdq(prepared: Path, out: Path, cfg: QuantizeConfig, ranges: Path,
                 nodes_to_quantize: list[str] | None = None, protected: list[str] | None = None) -> list[str]:
    """ONNX Runtime's quantize_static (QDQ, per-channel weights) with precomputed activation ranges.
    `protected`: the prepared model's protected_nodes, when the caller found them already (found here
    otherwise, if cfg.protect_attention_masks). The nodes of a quantized op type that read or write a
    tensor of unbounded range (unbounded_tensors) are kept float too, whatever the protection: returns
    the names of those not kept float already. The result is checked for scales that are not finite
    (check_scales)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    unbounded = unbounded_tensors(ranges)
    # the graph is read only when something here needs it: most CNNs have neither case
    model = onnx.load(str(prepared), load_external_data=False) if protected is None or unbounded else None
    if protected is None:
        found = (protected_nodes(model, static_op_types(cfg), cfg.exclude_nodes)
                 if cfg.protect_attention_masks else {})
        protected = [n for names in found.values() for n in names]
    on_unbounded: list[str] = []
    if unbounded:
        quantized, kept = set(static_op_types(cfg)), {*cfg.exclude_nodes, *protected}
        on_unbounded = [n.name for n in model.graph.node if n.name and n.op_type in quantized
                        and n.name not in kept and any(t in unbounded for t in [*n.input, *n.output])]
        log.debug("tensors of unbounded range, kept float: %s", sorted(unbounded))
        ranges = _finite_ranges(ranges, unbounded)
    quantize_static(str(prepared), str(out), None, quant_format=QuantFormat.QDQ,
                    per_channel=cfg.per_channel, activation_type=_quant_type(cfg.activation_type),
                    weight_type=_quant_type("int8"), calibrate_method=_calibration_method(cfg.algorithm),
                    op_types_to_quantize=static_op_types(cfg), nodes_to_quantize=nodes_to_quantize,
                    nodes_to_exclude=[*cfg.exclude_nodes, *protected, *on_unbounded] or None,
                    calibration_cache_path=str(ranges))
    check_scales(out)
    return on_unbounded
