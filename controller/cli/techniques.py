"""farmctl subcommands that apply one optimizer technique to an ONNX file: quantize, mixed-precision,
fuse, rewrite, evaluate. Each prints what it did (or one JSON object with --json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from controller.cli.flags import add_alias, add_input_shape_flag, input_shapes
from controller.errors import UsageError
from controller.measure.examples import EXAMPLES
from optimizers.quantization.quantizer import COMPUTE_OP_TYPES

DATA_HELP = "an .npz keyed by input name (optional 'labels'), a folder of images, or 'synthetic'"


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx file, or example:NAME (" + ", ".join(EXAMPLES) + ")")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="where to write the new model (default: NAME.TECHNIQUE.onnx beside the input)")
    p.add_argument("--json", action="store_true", help="print the record as one JSON object")


def _data(text: str | None, model: str, shapes: list[str]):
    """'synthetic', an .npz path or an image folder path (passed through; the library checks them); with
    --input-shape, loaded here with those shapes (images resized to them, arrays checked against them)."""
    if text is None or not shapes:
        return text
    import onnx

    from optimizers.data.feeds import load_data
    from optimizers.quantization.prepare import SYNTHETIC_CALIBRATION_SAMPLES

    proto = onnx.load(str(_source(model)), load_external_data=False)
    return load_data(text, proto, input_shapes=input_shapes(shapes),
                     max_samples=SYNTHETIC_CALIBRATION_SAMPLES if text == "synthetic" else None)


def _input_shape_flag(p: argparse.ArgumentParser) -> None:
    add_input_shape_flag(p, "fix an input's dynamic dimensions for the data, e.g. x=1,3,640,640 (repeatable)")


def _source(model: str) -> Path:
    from controller.measure.preflight import resolve_model

    return resolve_model(model)


def _print_result(result, as_json: bool, extra: dict | None = None) -> None:
    rec = result.record
    if as_json:
        print(json.dumps({"path": str(result.path), "record": rec.to_json(), **(extra or {})}, default=str))
        return
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB, {result.size_ratio:.2f}x smaller than "
          f"{rec.source_size_bytes / 1e6:.2f} MB) in {rec.elapsed_s:.1f} s")
    for what, n in rec.changes.items():
        print(f"  {what}: {n}")
    for op, why in rec.skipped_summary().items():
        print(f"  left as is: {op}: {why}")
    for key in ("weight_ratio", "matmul_weight_ratio", "full_int8_cosine", "cosine", "accuracy"):
        if key in rec.metrics:
            print(f"  {key}: {rec.metrics[key]}")
    for note in rec.notes:
        if not note.startswith("not quantized:"):
            print(f"  note: {note}")
    for k, v in (extra or {}).items():
        print(f"  {k}: {v}")
    print(f"  record: {result.record_path}")


def cmd_quantize(args: argparse.Namespace) -> int:
    from optimizers import Quantizer

    options = {}
    if args.op_types is not None:
        options["op_types"] = (COMPUTE_OP_TYPES if args.op_types.strip() == "compute"
                               else tuple(t.strip() for t in args.op_types.split(",") if t.strip()))
    if args.activation_type:
        options["activation_type"] = args.activation_type
    if args.block_size:
        options["block_size"] = args.block_size
    if args.method == "int8" and args.calibration_data is None:
        raise UsageError("static INT8 needs --calibration-data: " + DATA_HELP + " ('synthetic': random inputs, "
                         "a weak calibration); or --method dynamic, which needs none")
    q = Quantizer(args.method, **options)
    result = q.quantize(_source(args.model), calibration_data=_data(args.calibration_data, args.model,
                                                                    args.input_shape),
                        algorithm=args.algorithm, output=args.output, exclude_nodes=args.exclude or None)
    extra = {}
    if args.eval_data:
        from optimizers import evaluate

        ev = evaluate(result.path, args.eval_data, reference=_source(args.model),
                      input_shapes=input_shapes(args.input_shape))
        extra["evaluation"] = ev.to_json()
    _print_result(result, args.json, extra)
    return 0


def cmd_mixed_precision(args: argparse.Namespace) -> int:
    from optimizers import MixedPrecisionOptimizer

    times = None
    if args.profile_device:
        from optimizers import Profiler

        prof = Profiler(_source(args.model), threads=args.threads,
                        input_shapes=input_shapes(args.input_shape)).profile(device=args.profile_device)
        times = prof.layer_times()
        print(f"profiled {len(prof.layers)} layers on {prof.device} ({prof.total_ms:.2f} ms)", file=sys.stderr)
    opt = MixedPrecisionOptimizer(accuracy_threshold=args.threshold, sensitive_layers=args.sensitive_layer,
                                  metric=args.metric, algorithm=args.algorithm, layer_times_ms=times)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = opt.optimize(_source(args.model), calibration_data=_data(args.calibration_data, args.model,
                                                                        args.input_shape),
                          eval_data=_data(args.eval_data, args.model, args.input_shape), output=args.output,
                          progress=progress)
    _print_result(result, args.json, {"kept_float": result.record.settings["kept_float"]})
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from optimizers import OperatorFuser

    patterns = [p.split(",") for p in args.pattern] if args.pattern else None
    result = OperatorFuser(target=args.target).fuse_operations(_source(args.model), patterns=patterns,
                                                               output=args.output)
    _print_result(result, args.json)
    return 0


def cmd_rewrite(args: argparse.Namespace) -> int:
    from optimizers import OperatorOptimizer

    result = OperatorOptimizer(args.rewrite or None).optimize(_source(args.model), output=args.output)
    _print_result(result, args.json, {"nodes": f"{result.record.metrics['nodes_before']} -> "
                                               f"{result.record.metrics['nodes_after']}"})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from optimizers import evaluate

    if args.eval_data is None:
        raise UsageError("evaluate needs --eval-data: " + DATA_HELP)
    ev = evaluate(_source(args.model), args.eval_data, reference=_source(args.reference) if args.reference else None,
                  threads=args.threads, input_shapes=input_shapes(args.input_shape))
    if args.json:
        print(json.dumps(ev.to_json()))
        return 0
    print(f"{ev.samples} samples")
    if ev.accuracy is not None:
        print(f"  top-1 accuracy: {ev.accuracy:.4f}")
    if ev.fidelity is not None:
        f = ev.fidelity
        print(f"  cosine similarity: {f.cosine:.6f}\n  SQNR: {f.sqnr_db:.2f} dB\n  max abs error: {f.max_abs_error:.4g}")
        if f.top1_agreement is not None:
            print(f"  top-1 agreement: {f.top1_agreement:.4f}")
    return 0


def add_parsers(sub) -> None:
    """Register the technique subcommands on farmctl's subparsers."""
    from optimizers.graph.rewrites import REWRITES
    from optimizers.quantization.quantizer import ALGORITHMS, METHODS

    data_help = DATA_HELP
    p = sub.add_parser("quantize", help="quantize an ONNX model (INT8 static/dynamic, FP16, INT4)")
    _model_arg(p)
    p.add_argument("--method", choices=list(METHODS), default="int8",
                   help="int8 (static, calibrated), dynamic (INT8 weights, activations at run time), fp16, or int4 "
                        "(MatMul weights)")
    p.add_argument("--algorithm", choices=list(ALGORITHMS), default="minmax", help="calibration (static INT8)")
    p.add_argument("--calibration-data", default=None, help=data_help)
    p.add_argument("--eval-data", default=None, help="also report fidelity/accuracy on these data")
    p.add_argument("--exclude", action="append", default=[], metavar="NODE", help="keep this node in float")
    p.add_argument("--op-types", default=None, help="static INT8: comma-separated op types to quantize, or "
                   "'compute' for the compute ops and the data movement between them (default: every op ONNX "
                   "Runtime knows, with attention masks, residual Adds before LayerNorm and float islands kept "
                   "float)")
    p.add_argument("--activation-type", choices=["uint8", "int8"], default=None,
                   help="static INT8 activations: uint8 (U8S8, the default: fastest on x86) or int8 (S8S8)")
    p.add_argument("--block-size", type=int, default=0, help="INT4: weights per scale (default 128)")
    _input_shape_flag(p)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("mixed-precision", help="INT8 with the most sensitive layers kept in float")
    _model_arg(p)
    p.add_argument("--calibration-data", required=True, help=data_help)
    p.add_argument("--eval-data", default=None, help="data the threshold is checked on (default: calibration)")
    p.add_argument("--threshold", type=float, default=0.99, help="fidelity (or accuracy ratio) to keep")
    p.add_argument("--metric", choices=["cosine", "top1_agreement", "accuracy"], default="cosine")
    p.add_argument("--algorithm", choices=list(ALGORITHMS), default="minmax")
    p.add_argument("--sensitive-layer", action="append", default=[], metavar="NODE", help="always keep float")
    p.add_argument("--profile-device", default=None, help="profile on this device first (e.g. local) so "
                   "the layers that cost least time are kept float first")
    p.add_argument("--threads", type=int, default=1)
    _input_shape_flag(p)
    p.set_defaults(func=cmd_mixed_precision)

    p = sub.add_parser("fuse", help="fold BatchNorm into Conv and fuse activations")
    _model_arg(p)
    p.add_argument("--target", choices=["onnxruntime", "portable"], default="onnxruntime")
    p.add_argument("--pattern", action="append", default=[], metavar="A,B[,C]",
                   help="a chain such as Conv2D,BatchNorm,ReLU (repeatable; default: the three standard ones)")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("rewrite", help="rewrite expensive ops into cheaper equivalents")
    _model_arg(p)
    p.add_argument("--rewrite", action="append", choices=list(REWRITES), default=[],
                   help="apply only these (repeatable; default: all)")
    p.set_defaults(func=cmd_rewrite)

    p = sub.add_parser("evaluate", help="accuracy (with labels) and fidelity against a reference model")
    p.add_argument("model", help="the .onnx file to evaluate")
    p.add_argument("--eval-data", default=None, help=data_help + " (required)")
    add_alias(p, "--data", "--eval-data")      # evaluate's spelling before it matched optimize and quantize
    p.add_argument("--reference", default=None, help="the original model, for fidelity")
    p.add_argument("--threads", type=int, default=1)
    _input_shape_flag(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)
