"""Post-training quantization of ONNX models on top of ONNX Runtime's quantization tool:
INT8 static (QDQ, per-channel weights; MinMax, entropy (KL) or percentile calibration), INT8
dynamic, FP16 (float32 inputs/outputs kept) and INT4 weight-only (MatMulNBits for MatMul/Gemm)."""

from __future__ import annotations

import logging
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.extras import install_hint
from optimizers.data.feeds import Dataset, ImagePreprocess
from optimizers.errors import DataMismatch, OptimizerError, UnknownOption
from optimizers.graph.model import (
    FLOAT_TYPES,
    LoadedModel,
    ModelLike,
    default_output,
    load_model,
    require_float_weights,
)
from optimizers.quantization.config import (  # noqa: F401  (re-exported: QuantizeConfig & co. live there)
    ALGORITHMS,
    COMPUTE_OP_TYPES,
    ENTROPY_BINS,
    PER_CHANNEL_MIN_OPSET,
    QuantizeConfig,
    check_algorithm,
    static_op_types,
)
from optimizers.quantization.prepare import calibration_set, gemm_to_matmul, prepare
from optimizers.quantization.protection import protected_nodes
from optimizers.quantization.static import FeedReader, calibrate_ranges, quantize_qdq  # noqa: F401
from optimizers.record import OptimizationRecord, OptimizedModel, Skipped, write_result

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """What a method works on: the prepared model file, the settings, and the record to fill."""

    source: LoadedModel
    prepared: Path           # the (upgraded, pre-processed) float model, on disk
    workdir: Path
    config: QuantizeConfig
    record: OptimizationRecord
    calibration: Dataset | None = None


class QuantMethod(ABC):
    """One quantization method; `needs_calibration` says whether it reads calibration data."""

    name: str = ""
    suffix: str = ""
    needs_calibration: bool = False

    @abstractmethod
    def apply(self, job: _Job):
        """Return the quantized onnx ModelProto."""


class Int8Static(QuantMethod):
    """Static INT8 in QDQ format: activation ranges from calibration, per-channel INT8 weights."""

    name, suffix, needs_calibration = "int8", "int8", True

    def apply(self, job: _Job):
        import onnx

        cache = calibrate_ranges(job.prepared, job.calibration.feeds, job.config, job.workdir)
        if job.config.algorithm in ("kl", "entropy"):
            job.record.settings["entropy_bins"] = ENTROPY_BINS
        out = job.workdir / "int8.onnx"
        kept = (protected_nodes(onnx.load(str(job.prepared)), static_op_types(job.config),
                                job.config.exclude_nodes)
                if job.config.protect_attention_masks else {})
        for what, names in kept.items():
            if names:
                job.record.changes[f"{what} kept float"] = len(names)
        unbounded = quantize_qdq(job.prepared, out, job.config, cache,
                                 protected=[n for names in kept.values() for n in names])
        if unbounded:
            job.record.changes["ops on a tensor of unbounded range (e.g. -inf) kept float"] = len(unbounded)
        return onnx.load(str(out))


class Int8Dynamic(QuantMethod):
    """Dynamic INT8: weights stored in INT8, activations quantized at run time (no calibration)."""

    name, suffix = "dynamic", "int8-dynamic"

    def apply(self, job: _Job):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = job.workdir / "dynamic.onnx"
        quantize_dynamic(str(job.prepared), str(out), weight_type=QuantType.QInt8, per_channel=False,
                         nodes_to_exclude=list(job.config.exclude_nodes) or None)
        job.record.notes.append("dynamic INT8 quantizes activations at run time; on conv nets it is often "
                                "slower than FP32 on x86 CPUs: measure it before choosing it")
        return onnx.load(str(out))


class Fp16(QuantMethod):
    """FP16 weights and compute; graph inputs and outputs stay float32 so callers need not change."""

    name, suffix = "fp16", "fp16"

    def apply(self, job: _Job):
        import onnx
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        model = onnx.load(str(job.prepared))
        blocked = [n for n in model.graph.node if n.op_type in DEFAULT_OP_BLOCK_LIST]
        for n in blocked:
            job.record.skipped.append(Skipped(n.name, n.op_type, "kept in float32: ONNX Runtime's float16 "
                                                                 "converter blocks this op type"))
        return convert_float_to_float16(model, keep_io_types=True,
                                        node_block_list=list(job.config.exclude_nodes) or None)


class Int4WeightOnly(QuantMethod):
    """INT4 weight-only: MatMul (and Gemm, rewritten to MatMul+Add) weights in 4-bit blocks
    (ONNX Runtime's MatMulNBits); activations stay float."""

    name, suffix = "int4", "int4"

    def apply(self, job: _Job):
        import onnx

        try:
            import onnx_ir  # noqa: F401  (ORT's quantizer imports it without declaring it)
        except ImportError:
            raise OptimizerError("INT4 quantization needs onnx-ir (ONNX Runtime's MatMulNBitsQuantizer imports "
                                 f"it), which is not installed: {install_hint('onnx_ir')}") from None
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(job.prepared))
        gemms = gemm_to_matmul(model)
        if gemms:
            job.record.changes["Gemm rewritten to MatMul+Add"] = gemms
        inits = {i.name for i in model.graph.initializer}
        candidates = [n for n in model.graph.node if n.op_type == "MatMul"]
        for n in candidates:
            if n.input[1] not in inits:
                job.record.skipped.append(Skipped(n.name, n.op_type, "its weight is computed at run time "
                                                                     "(not a constant), so there is nothing to store "
                                                                     "in 4 bits"))
        if not any(n.input[1] in inits for n in candidates):
            raise OptimizerError("INT4 weight-only quantization found no MatMul/Gemm with constant weights; "
                                 "use method='int8' for conv nets")
        quant = MatMulNBitsQuantizer(model, bits=4, block_size=job.config.block_size,
                                     is_symmetric=job.config.symmetric, accuracy_level=4,
                                     nodes_to_exclude=list(job.config.exclude_nodes))
        quant.process()
        return quant.model.model


METHODS: dict[str, type[QuantMethod]] = {"int8": Int8Static, "dynamic": Int8Dynamic, "fp16": Fp16,
                                          "int4": Int4WeightOnly}


class Quantizer:
    """`Quantizer(method="int8"|"int4"|"fp16"|"dynamic").quantize(model=..., calibration_data=...,
    algorithm="minmax"|"kl"|"percentile")` -> OptimizedModel (the new file and its record).

    Static INT8's defaults follow what ran fastest at equal fidelity on the targets we measure (x86 here):
    U8S8 (activation_type="uint8"; S8S8 ran YOLOv8n at 0.40x its speed) on every op ONNX Runtime can
    quantize (op_types=(); COMPUTE_OP_TYPES ran YOLOv8n at 0.86x), which makes the default at least as fast
    as ONNX Runtime's plain per-channel U8S8 quantize_static on CNNs (YOLOv8n: 1.02x, paired; numbers in
    docs/benchmarks.md's detector table), with the fragile nodes the graph shows kept float
    (protection.py: attention masks, residual Adds before LayerNorm, float islands). Other targets may
    prefer other types: `farmctl optimize` measures S8S8 and the compute-op set as candidates there."""

    def __init__(self, method: str = "int8", **options) -> None:
        if method not in METHODS:
            raise UnknownOption("quantization method", method, METHODS)
        try:
            self.config = QuantizeConfig(method=method, **options)
        except TypeError as exc:
            raise OptimizerError(f"Quantizer: {exc}; options are: "
                                 f"{', '.join(f for f in QuantizeConfig.__dataclass_fields__ if f != 'method')}"
                                 ) from None
        check_algorithm(self.config.algorithm)

    def quantize(self, model: ModelLike, calibration_data=None, algorithm: str | None = None,
                 output: str | Path | None = None, preprocess: ImagePreprocess | None = None,
                 exclude_nodes: list[str] | None = None) -> OptimizedModel:
        """Quantize `model` (path or ModelProto) and write the result (default NAME.METHOD.onnx beside it).

        calibration_data: numpy array (one-input models), dict of arrays keyed by input name, .npz path,
        image folder path (see ImagePreprocess), an iterable of feed dicts, or "synthetic" (random inputs;
        a weak calibration, said in the record). Only static INT8 reads it."""
        cfg = self.config
        if algorithm is not None:
            check_algorithm(algorithm)
            cfg = replace(cfg, algorithm=algorithm)
        if exclude_nodes:
            cfg = replace(cfg, exclude_nodes=tuple(exclude_nodes))
        method = METHODS[cfg.method]()
        started = time.perf_counter()
        source = load_model(model, data=calibration_data)
        require_float_weights(source.proto, f"{cfg.method} quantization")
        _check_node_names(source.proto, cfg.exclude_nodes)
        settings = cfg.settings()
        if not method.needs_calibration:
            for key in ("algorithm", "percentile", "max_calibration_samples", "activation_type", "per_channel",
                        "op_types"):
                settings.pop(key, None)
        if cfg.method != "int4":
            settings.pop("block_size", None)
            settings.pop("symmetric", None)
        record = OptimizationRecord(technique=f"quantize:{cfg.method}", settings=settings,
                                    source=str(source.path or "<ModelProto>"), source_digest=source.digest,
                                    source_size_bytes=source.size_bytes)
        source.note_export(record)
        calibration = None
        if method.needs_calibration:
            calibration = calibration_set(calibration_data, source.proto, preprocess, cfg, record)
        with tempfile.TemporaryDirectory(prefix="edgefarm-quant-") as tmp:
            workdir = Path(tmp)
            prepared = prepare(source, cfg, workdir, record)
            job = _Job(source, prepared, workdir, cfg, record, calibration)
            try:
                quantized = method.apply(job)
            except OptimizerError:  # DataMismatch included: already says what to fix
                raise
            except Exception as exc:  # ORT's tool raises plain exceptions; say which method failed and why
                raise OptimizerError(f"{cfg.method} quantization failed in ONNX Runtime's quantization tool: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}") from exc
            import onnx

            _account(onnx.load(str(prepared)), quantized, cfg, record)
            out = default_output(source, method.suffix, output)
            result = write_result(quantized, out, record, started)
        log.info("%s: %s -> %s (%.2fx smaller)", record.technique, record.source, out, result.size_ratio)
        return result


def _check_node_names(model, names) -> None:
    known = {n.name for n in model.graph.node}
    unknown = [n for n in names if n not in known]
    if unknown:
        sample = ", ".join(sorted(known)[:8])
        raise DataMismatch(f"exclude_nodes names {', '.join(repr(u) for u in unknown)}, which the model does not "
                           f"have; its nodes are e.g. {sample}")


def _weight_bytes(model) -> int:
    from onnx import numpy_helper

    total = 0
    for init in model.graph.initializer:
        total += numpy_helper.to_array(init).nbytes if init.data_type != 22 else len(init.raw_data)
    return total


def _account(prepared, quantized, cfg: QuantizeConfig, record: OptimizationRecord) -> None:
    """Which nodes holding float weights were quantized, which were not and why, and the weight sizes."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

    consts = {i.name: i for i in prepared.graph.initializer if i.data_type in FLOAT_TYPES and
              int(np.prod(i.dims)) > 1}
    weighted = [n for n in prepared.graph.node if n.op_type not in ("Constant",) and
                any(x in consts for x in n.input)]
    out_inits = {i.name: i for i in quantized.graph.initializer}
    out_nodes = {n.name: n for n in quantized.graph.node if n.name}
    registry = {"int8": QDQRegistry, "dynamic": IntegerOpsRegistry}.get(cfg.method)
    quantized_ops: dict[str, int] = {}
    already = {s.node for s in record.skipped}
    for node in weighted:
        now = out_nodes.get(node.name)
        still_float = now is not None and now.op_type == node.op_type and any(
            x in out_inits and out_inits[x].data_type in FLOAT_TYPES and int(np.prod(out_inits[x].dims)) > 1
            for x in now.input)
        if cfg.method == "fp16":
            still_float = node.name in already
        if not still_float:
            quantized_ops[node.op_type] = quantized_ops.get(node.op_type, 0) + 1
            continue
        if node.name in already:
            continue
        if node.name in cfg.exclude_nodes:
            reason = "excluded by request (kept in float)"
        elif registry is not None and node.op_type not in registry:
            reason = f"ONNX Runtime's {cfg.method} quantizer has no rule for {node.op_type}"
        elif cfg.method == "int8" and node.op_type not in static_op_types(cfg):
            reason = (f"{node.op_type} is not in the static op set (kept float for accuracy; "
                      "name it in op_types to quantize it too)")
        elif cfg.method == "int4":
            reason = "INT4 weight-only covers MatMul/Gemm weights only"
        else:
            reason = "ONNX Runtime's quantizer left it in float (its inputs had no range, or the weight layout " \
                     "is unsupported)"
        record.skipped.append(Skipped(node.name, node.op_type, reason))
    verb = "converted to float16" if cfg.method == "fp16" else "quantized"
    for op, n in sorted(quantized_ops.items()):
        record.changes[f"{op} {verb}"] = n
    before, after = _weight_bytes(prepared), _weight_bytes(quantized)
    record.metrics["weight_bytes_before"] = before
    record.metrics["weight_bytes_after"] = after
    record.metrics["weight_ratio"] = round(before / max(after, 1), 3)
    if cfg.method == "int4":
        from onnx import numpy_helper

        mm_before = sum(int(np.prod(consts[x].dims)) * 4 for n in weighted if n.op_type in ("MatMul", "Gemm")
                        for x in n.input[1:2] if x in consts)
        mm_after = sum(numpy_helper.to_array(out_inits[x]).nbytes for n in quantized.graph.node if n.op_type == "MatMulNBits" for x in n.input[1:4]
                       if x in out_inits)
        if mm_after:
            record.metrics["matmul_weight_ratio"] = round(mm_before / mm_after, 3)
    if record.skipped:
        record.notes.append("not quantized: " + "; ".join(f"{op}: {why}"
                                                          for op, why in record.skipped_summary().items()))
