"""Getting a float model ready for ONNX Runtime's quantizer: the opset per-channel weights need, ONNX
Runtime's pre-processing (with fallbacks when symbolic shape inference fails on real exports), fixed
names its optimizer reuses, and Gemm written as MatMul+Add where INT4 weights need it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from optimizers.data.feeds import Dataset, ImagePreprocess, load_data, synthetic_data
from optimizers.errors import DataMismatch
from optimizers.graph.model import LoadedModel, opset_version, upgrade_opset
from optimizers.quantization.config import PER_CHANNEL_MIN_OPSET, QuantizeConfig
from optimizers.record import OptimizationRecord

log = logging.getLogger(__name__)


def gemm_to_matmul(model) -> int:
    """Rewrite Gemm nodes with a constant B (any transB/alpha/beta, transA=0) into MatMul + Add, in place."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    new_nodes, count = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0):
            new_nodes.append(node)
            continue
        has_bias = len(node.input) > 2 and bool(node.input[2])
        beta = float(attrs.get("beta", 1.0))
        if has_bias and beta != 1.0 and node.input[2] not in inits:
            new_nodes.append(node)  # a computed bias scaled by beta: keep the Gemm
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if attrs.get("transB", 0):
            w = w.T
        w = w * np.float32(attrs.get("alpha", 1.0))
        wname = node.input[1] + ".matmul"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), wname))
        out = node.output[0]
        mm_out = out + ".mm" if has_bias else out
        new_nodes.append(helper.make_node("MatMul", [node.input[0], wname], [mm_out], name=node.name))
        if has_bias:
            bias = node.input[2]
            if beta != 1.0:
                bias = bias + ".scaled"
                model.graph.initializer.append(numpy_helper.from_array(
                    numpy_helper.to_array(inits[node.input[2]]) * np.float32(beta), bias))
            new_nodes.append(helper.make_node("Add", [mm_out, bias], [out], name=node.name + "_bias"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return count


def prepare(source: LoadedModel, cfg: QuantizeConfig, workdir: Path, record: OptimizationRecord) -> Path:
    """Opset upgrade when per-channel needs it, then ONNX Runtime's pre-processing with fallbacks."""
    import onnx

    model = source.proto
    if cfg.method in ("int8", "dynamic") and opset_version(model) < PER_CHANNEL_MIN_OPSET:
        old = opset_version(model)
        model = upgrade_opset(model, PER_CHANNEL_MIN_OPSET)
        record.changes[f"opset {old} -> {PER_CHANNEL_MIN_OPSET}"] = 1
        record.notes.append(f"upgraded opset {old} to {PER_CHANNEL_MIN_OPSET}: ONNX Runtime's per-channel QDQ "
                            "quantization needs it")
    raw = workdir / "float.onnx"
    onnx.save(model, str(raw))
    if not cfg.preprocess:
        return raw
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = workdir / "preprocessed.onnx"
    attempts = [("full", {}), ("without symbolic shape inference", {"skip_symbolic_shape": True}),
                ("without optimization and symbolic shape inference",
                 {"skip_symbolic_shape": True, "skip_optimization": True})]
    errors = []
    for label, kwargs in attempts:
        try:
            quant_pre_process(str(raw), str(pre), **kwargs)
            _rename_runtime_names(pre)
            record.settings["preprocessing"] = label
            if errors:
                record.notes.append(f"pre-processing ran {label} (the fuller pass failed: {errors[-1]})")
            return pre
        except Exception as exc:  # symbolic shape inference raises assorted errors on real exports
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            log.info("quant_pre_process (%s) failed: %s", label, errors[-1])
            remove_shape_inference_leftovers()
    record.settings["preprocessing"] = "none"
    record.notes.append(f"ONNX Runtime's pre-processing failed ({errors[-1]}); quantized the model as it is")
    return raw


SHAPE_INFERENCE_LEFTOVER = "sym_shape_infer_temp.onnx"


def remove_shape_inference_leftovers(folder: Path | None = None) -> list[Path]:
    """ONNX Runtime's symbolic shape inference, when it fails, saves its half-inferred model as
    sym_shape_infer_temp.onnx plus its weights as UUID-named .data files into the current directory (the
    user's). Remove exactly those files (the ones that model names) and return them."""
    import onnx

    folder = folder or Path.cwd()
    temp = folder / SHAPE_INFERENCE_LEFTOVER
    if not temp.is_file():
        return []
    try:
        model = onnx.load(str(temp), load_external_data=False)
    except Exception:  # not the file ORT writes: leave it alone
        return []
    names = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    removed = [folder / n for n in names if "/" not in n and (folder / n).is_file()] + [temp]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _rename_runtime_names(path: Path) -> None:
    """Give the tensors ONNX Runtime's optimizer named with fixed names (its MatMulAddFusion writes
    'gemm_input_shape', 'gemm_output_shape', ...) names of their own: when ONNX Runtime later loads the
    quantized model, the same fusion on a MatMul+Add kept in float adds those names again and the
    session fails with "Attempt to replace the existing tensor"."""
    import onnx

    model = onnx.load(str(path))
    fixed = {i.name for i in model.graph.initializer if i.name.startswith("gemm_")}
    fixed |= {o for n in model.graph.node for o in n.output if o.startswith("gemm_")}
    if not fixed:
        return
    rename = {name: f"edgefarm_pre/{name}" for name in fixed}
    for init in model.graph.initializer:
        init.name = rename.get(init.name, init.name)
    for node in model.graph.node:
        for i, x in enumerate(node.input):
            node.input[i] = rename.get(x, x)
        for i, x in enumerate(node.output):
            node.output[i] = rename.get(x, x)
    for vi in model.graph.value_info:
        vi.name = rename.get(vi.name, vi.name)
    onnx.save(model, str(path))


SYNTHETIC_CALIBRATION_SAMPLES = 16   # random inputs drawn when calibration_data='synthetic'


def calibration_set(data, model, preprocess, cfg: QuantizeConfig, record: OptimizationRecord) -> Dataset:
    if data is None:
        raise DataMismatch("static INT8 needs calibration_data (arrays, an .npz keyed by input name, an image "
                           "folder or an iterable of feed dicts); pass calibration_data='synthetic' (--calibration-data synthetic) to calibrate "
                           "on random inputs (weak), or use method='dynamic', which needs none")
    if isinstance(data, str) and data == "synthetic":
        ds = synthetic_data(model, n=SYNTHETIC_CALIBRATION_SAMPLES)
    else:
        ds = data if isinstance(data, Dataset) else load_data(data, model, preprocess=preprocess)
        ds = ds.limit(cfg.max_calibration_samples)
    if ds.source == "synthetic":   # (also when the caller made them, with input shapes)
        record.notes.append("calibrated on synthetic random inputs: activation ranges may not match real data")
    record.settings["calibration"] = {"source": ds.source, "samples": len(ds)}
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        record.settings["calibration"]["preprocessing"] = (preprocess or ImagePreprocess()).describe()
    return ds
