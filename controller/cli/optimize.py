"""`farmctl optimize`: the product's main job from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from controller.cli.flags import add_measure_flags, measure_settings
from controller.optimization.candidates import TECHNIQUES

EXIT_NO_CANDIDATE = 3


def add_parser(sub) -> None:
    """Register `farmctl optimize`."""
    p = sub.add_parser("optimize", help="make candidates, measure them on the device(s), choose the fastest "
                                        "that meets the constraints",
                       description="Without MODEL: the built-in PyTorch example (digits MobileNetV2, all "
                                   "techniques). With an ONNX MODEL: the post-training techniques.")
    add_measure_flags(p, model_help="an .onnx file or example:NAME (default: the built-in PyTorch digits "
                                    "example, which the training-time techniques apply to)", many_devices=True)
    p.add_argument("--max-latency-ms", type=float, default=None, help="p50 limit on the device")
    p.add_argument("--max-size-mb", type=float, default=None, help="model file size limit (MB = 10^6 bytes)")
    p.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="accuracy points the candidate may lose (labelled data; default 1.0 when neither "
                        "this nor --min-fidelity is given)")
    p.add_argument("--min-fidelity", type=float, default=None,
                   help="output cosine vs the original's, per output over all samples, the worst output "
                        "(default 0.99 without labels)")
    p.add_argument("--metric", default=None, metavar="NAME",
                   help="a task metric judged on every candidate, higher is better: top1 (classifiers), "
                        "mask-iou@T (dense probability maps thresholded at T, e.g. mask-iou@0.5), det-agreement "
                        "(detectors: COCO mAP@0.5 against the baseline's own detections), or your own "
                        "module:function / path/to/file.py:function taking (reference outputs, candidate "
                        "outputs, labels) -> float")
    p.add_argument("--min-metric", type=float, default=None, help="the --metric value a candidate must reach")
    p.add_argument("--max-metric-drop", type=float, default=None,
                   help="how far below the baseline's --metric value a candidate may fall (default 0.01 when "
                        "--metric is given and no other quality limit)")
    p.add_argument("--calibration-data", default=None,
                   help=".npz keyed by input name, or an image folder (see --image-*)")
    p.add_argument("--eval-data", default=None,
                   help=".npz keyed by input name with optional 'labels', or an image folder")
    p.add_argument("--image-mean", default=None, help="image folders: per-channel mean, e.g. 0.485,0.456,0.406")
    p.add_argument("--image-std", default=None, help="image folders: per-channel std, e.g. 0.229,0.224,0.225")
    p.add_argument("--image-scale", type=float, default=None, help="image folders: pixel scale (default 1/255)")
    p.add_argument("--image-layout", choices=["auto", "NCHW", "NHWC"], default=None)
    p.add_argument("--techniques", default=None,
                   help=f"comma separated subset of: {', '.join(TECHNIQUES)} (default: all that apply)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="stop making and measuring candidates after this long; choose the best so far")
    p.add_argument("--recovery-minutes", type=float, default=None,
                   help="an ONNX model's pruned candidates (prune): minutes each one is trained toward the original's "
                        "outputs on unlabelled images (--calibration-data, other than --eval-data; default 8)")
    p.add_argument("--confirm-rounds", type=int, default=None,
                   help="more loops, each paired with the baseline, for every candidate whose speedup interval "
                        "still reaches the noise margin (default 2; 0 = one paired loop each)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--remeasure", action="store_true",
                       help="time and evaluate again what an earlier run with the same model, data, techniques and "
                            "settings measured (its builds are reused); by default a rerun resumes from the store")
    again.add_argument("--fresh", action="store_true", help="build and measure every candidate again")
    p.add_argument("--tflite", action="store_true",
                   help="also convert the PyTorch candidates to .tflite with litert-torch (optional extra "
                        "edgefarm[litert-torch]) and measure them with the LiteRT backend")
    p.add_argument("--out", type=Path, default=Path("edgefarm-optimize"),
                   help="folder for candidates, the chosen model and the reports (default ./edgefarm-optimize)")
    p.set_defaults(func=cmd_optimize)


def _floats(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(v) for v in text.split(",") if v.strip())


def _preprocess(args: argparse.Namespace):
    if all(getattr(args, k) is None for k in ("image_mean", "image_std", "image_scale", "image_layout")):
        return None
    from optimizers.data.feeds import ImagePreprocess

    d = ImagePreprocess()
    return ImagePreprocess(mean=_floats(args.image_mean) or d.mean, std=_floats(args.image_std) or d.std,
                           scale=args.image_scale or d.scale, layout=args.image_layout or d.layout)


def cmd_optimize(args: argparse.Namespace) -> int:
    from controller.optimization.api import Constraints, OptimizeOptions, optimize
    from controller.optimization.report import keep_line, result_summary
    from controller.optimization.sources import check_pytorch_only

    check_pytorch_only(args.model)
    constraints = Constraints(args.max_latency_ms, args.max_size_mb, args.max_accuracy_drop, args.min_fidelity,
                              args.min_metric, args.max_metric_drop)
    sink = None if not args.quiet else (lambda line: None)
    reuse = "nothing" if args.fresh else "builds" if args.remeasure else "all"
    options = OptimizeOptions(calibration_data=args.calibration_data, eval_data=args.eval_data,
                              preprocess=_preprocess(args), techniques=args.techniques,
                              budget_minutes=args.budget_minutes, out_dir=args.out, settings=measure_settings(args),
                              store=args.store, inventory=args.inventory, progress=sink, tflite=args.tflite,
                              metric=args.metric, reuse=reuse, allow_mixed=args.allow_mixed,
                              recovery_minutes=args.recovery_minutes,
                              **({} if args.confirm_rounds is None else {"confirm_rounds": args.confirm_rounds}))
    result = optimize(args.model, args.device or ["local"], constraints, options=options)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
        # for the person reading stderr: why a model was kept, what was lost
        for line in [keep_line(d) for d in result.devices if d.chosen == "baseline"] + \
                [f"lost: {item}" for item in result.lost]:
            print(f"farmctl: {line}", file=sys.stderr)
    else:
        print(Path(result.out_dir / "report.md").read_text())
        print(result_summary(result))
    failures = [d.failure for d in result.devices if d.failure]
    if failures:
        print("farmctl: error: " + " | ".join(failures) + "; relax a constraint or add techniques (what was "
              "measured is in the store and the report)", file=sys.stderr)
        return EXIT_NO_CANDIDATE
    return 0
