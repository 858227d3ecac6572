"""farmctl's commands on stored results: report (every run, a model x device pivot), compare (runs, models or
devices side by side, with a per-layer diff) and show (one run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SELECTORS = ("a run id (7 or run:7), model:NAME (a model's newest successful run; NAME or a digest prefix), "
             "device:NAME (a device's newest), or a bare model or device name")


def add_parsers(sub) -> None:
    """Register report, compare and show."""
    p = sub.add_parser("report", help="tables of stored results: a model x device pivot and every run")
    p.add_argument("--format", choices=["md", "csv", "json", "html"], default="md",
                   help="md: the pivot and the runs table; csv: every stored column; json: runs and pivot; "
                        "html: with a latency plot")
    p.add_argument("-o", "--output", type=Path, default=None, help="write to a file instead of stdout")
    p.add_argument("--model", default=None, help="model name or digest prefix")
    p.add_argument("--device", default=None, help="device name")
    p.add_argument("--kind", choices=["benchmark", "profile"], default=None)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the newest N runs")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare stored runs, models or devices: latency deltas, the paired "
                                       "interval, a per-layer diff")
    p.add_argument("sides", nargs="+", metavar="SIDE", help=f"two or more of: {SELECTORS}; the first is the "
                   "baseline")
    p.add_argument("--model", default=None, help="narrow device:NAME sides to this model (name or digest prefix)")
    p.add_argument("--device", default=None, help="narrow model:NAME sides to this device")
    p.add_argument("--top", type=int, default=25, metavar="N", help="aligned layers to show, slowest first (0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object: sides, latency, layers, notes")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("show", help="one stored run: its settings, statistics and layers")
    p.add_argument("run", type=int, help="the run id (`farmctl report` lists them)")
    p.add_argument("--top", type=int, default=25, metavar="N", help="layers to show, slowest first (0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object: run, settings, result, device, layers")
    p.set_defaults(func=cmd_show)


def cmd_report(args: argparse.Namespace) -> int:
    from controller.measure.compare import reading
    from controller.measure.report import render

    with reading(args.store) as store:
        runs = store.dataframe("runs", model=args.model, device=args.device, kind=args.kind, limit=args.limit)
    if not len(runs):
        print("farmctl: no stored run matches these filters; `farmctl report` without them lists every run",
              file=sys.stderr)
    text = render(runs, args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {len(runs)} runs to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from controller.measure.compare import compare_runs

    result = compare_runs(args.store, args.sides, model=args.model, device=args.device)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        sys.stdout.write(result.to_markdown(top=args.top))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from controller.measure.show import show_run

    view = show_run(args.store, args.run)
    if args.json:
        print(json.dumps(view.to_json(), indent=2, default=str))
    else:
        sys.stdout.write(view.to_markdown(top=args.top))
    return 0
