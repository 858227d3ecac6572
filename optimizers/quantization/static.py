"""Static INT8 on ONNX Runtime's quantizer: activation ranges from its calibrators (with our entropy
histogram), then quantize_static in QDQ format with those ranges and the protected nodes kept float."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

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
    MinMax); 2048/128 is the TensorRT recipe the calibrator implements."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    extra: dict = {}
    if cfg.algorithm in ("kl", "entropy"):
        extra = {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    elif cfg.algorithm == "percentile":
        extra = {"percentile": cfg.percentile}
    calibrator = create_calibrator(prepared, list(cfg.op_types) or None,
                                   augmented_model_path=str(workdir / "augmented.onnx"),
                                   calibrate_method=_calibration_method(cfg.algorithm),
                                   providers=["CPUExecutionProvider"], extra_options=extra)
    with contextlib.redirect_stdout(io.StringIO()) as chatter:  # the calibrators print() their progress
        calibrator.collect_data(FeedReader(feeds))
        ranges = calibrator.compute_data()
    log.debug("calibration: %s", chatter.getvalue().strip())
    cache = workdir / f"ranges-{cfg.algorithm}.json"
    save_tensors_data(ranges, cache)
    return cache


def quantize_qdq(prepared: Path, out: Path, cfg: QuantizeConfig, ranges: Path,
                 nodes_to_quantize: list[str] | None = None, protected: list[str] | None = None) -> None:
    """ONNX Runtime's quantize_static (QDQ, per-channel weights) with precomputed activation ranges.
    `protected`: the prepared model's protected_nodes, when the caller found them already (found here
    otherwise, if cfg.protect_attention_masks)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    if protected is None:
        import onnx

        found = (protected_nodes(onnx.load(str(prepared)), static_op_types(cfg), cfg.exclude_nodes)
                 if cfg.protect_attention_masks else {})
        protected = [n for names in found.values() for n in names]
    quantize_static(str(prepared), str(out), None, quant_format=QuantFormat.QDQ,
                    per_channel=cfg.per_channel, activation_type=_quant_type(cfg.activation_type),
                    weight_type=_quant_type("int8"), calibrate_method=_calibration_method(cfg.algorithm),
                    op_types_to_quantize=static_op_types(cfg), nodes_to_quantize=nodes_to_quantize,
                    nodes_to_exclude=[*cfg.exclude_nodes, *protected] or None, calibration_cache_path=str(ranges))
