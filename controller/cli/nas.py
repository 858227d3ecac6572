"""`farmctl nas`: architecture search for a device, on the user's labelled data (--data) or the built-in
digits."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from controller.cli.flags import add_alias, add_priority_flag

EXIT_NOTHING_FITS = 3


def add_parser(sub) -> None:
    """Register `farmctl nas`."""
    p = sub.add_parser("nas", help="search MobileNetV3-style architectures for a device, latency measured there")
    p.add_argument("--device", default="local", help="inventory name or HOST:PORT (default: local)")
    p.add_argument("--search-space", default="mobilenet_v3", help="the space searched (default mobilenet_v3, "
                   "the one there is so far)")
    p.add_argument("--max-latency-ms", type=float, default=None, help="p50 limit on the device")
    p.add_argument("--max-size-mb", type=float, default=None, help="float32 weights limit (MB)")
    add_alias(p, "--latency-ms", "--max-latency-ms")     # the spellings before optimize's names were adopted
    add_alias(p, "--size-mb", "--max-size-mb")
    p.add_argument("--min-accuracy", type=float, default=None, help="minimum proxy accuracy (0-1)")
    p.add_argument("--iterations", type=int, default=10, help="evolution steps after the initial population")
    p.add_argument("--population", type=int, default=6)
    p.add_argument("--proxy-epochs", type=int, default=2, help="training epochs per evaluated architecture "
                   "(default 2: after 1 epoch on 1,500 images BatchNorm's running statistics are not settled and every "
                   "architecture scores at chance)")
    p.add_argument("--proxy-samples", type=int, default=1500, help="training images per evaluated architecture")
    p.add_argument("--final-epochs", type=int, default=8, help="training epochs of the best architecture")
    p.add_argument("--data", type=Path, default=None, metavar="NPZ_OR_FOLDER",
                   help="your labelled images: an .npz with x/y (or images/labels) arrays [N,C,H,W] and [N], or a "
                        "folder with one sub-folder of images per class (default: the built-in 1x28x28 digits)")
    p.add_argument("--image-size", type=int, default=32,
                   help="side an image folder's images are resized and center-cropped to (default 32; scaled to "
                        "[0,1], ImageNet mean/std)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibrate", type=int, default=6, help="whole random architectures measured to fit the "
                   "latency table's scale, once per device (0: no fit, scale 1)")
    p.add_argument("--max-attempts", type=int, default=6, help="measurements of a block or model at most, while "
                   "the reference model timed beside it says the device was slowed (default 6)")
    p.add_argument("--out", type=Path, default=Path("edgefarm-nas"), help="nas-best.onnx/.json, nas.png")
    add_priority_flag(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nas)


def cmd_nas(args: argparse.Namespace) -> int:
    from controller.errors import UsageError
    from controller.measure.undisturbed import Undisturbed
    from controller.optimization.nas import LUT_SETTINGS, NASOptions, run_nas

    if args.max_attempts < 1 or args.calibrate < 0:
        raise UsageError("--max-attempts must be at least 1 and --calibrate at least 0")
    for flag, value in (("--final-epochs", args.final_epochs), ("--proxy-epochs", args.proxy_epochs),
                        ("--iterations", args.iterations), ("--proxy-samples", args.proxy_samples)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value} (checked before the search starts)")

    constraints = {k: v for k, v in (("latency_ms", args.max_latency_ms), ("model_size_mb", args.max_size_mb),
                                     ("min_accuracy", args.min_accuracy)) if v is not None}
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    run = run_nas(args.device, constraints, options=NASOptions(
        iterations=args.iterations, search_space=args.search_space, population=args.population,
        proxy_epochs=args.proxy_epochs, proxy_samples=args.proxy_samples, final_epochs=args.final_epochs,
        out_dir=args.out, store=args.store, inventory=args.inventory, seed=args.seed, progress=say,
        calibrate=args.calibrate, rule=Undisturbed(max_attempts=args.max_attempts), data=args.data,
        image_size=args.image_size, settings=replace(LUT_SETTINGS, priority=args.priority)))
    if args.json:
        print(json.dumps(run.to_json(), indent=1))
    elif run.best:
        print(f"best on {run.device}: {run.best['describe']}")
        print(f"  measured p50 {run.measured_ms:.3f} ms at the device's undisturbed speed (predicted "
              f"{run.best['predicted_ms']:.3f} ms), test accuracy "
              f"{run.accuracy:.4f}, {run.params:,} parameters -> {run.model_path}")
        print(f"  {len(run.history)} architectures evaluated; latency table: {run.table_blocks} blocks "
              f"({run.blocks_measured} measured now); plot: {run.plot}")
    if run.failure:
        print(f"farmctl: error: {run.failure}", file=sys.stderr)
        return EXIT_NOTHING_FITS
    return 0
