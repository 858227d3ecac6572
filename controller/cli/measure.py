"""farmctl's measuring commands: devices, bench, profile and example (report, compare, show: results.py)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from controller.cli.flags import add_measure_flags, flag_text, measure_settings, progress_printer, say_example
from controller.measure.api import BOTTLENECK_PERCENT
from controller.measure.settings import MeasureSettings
from controller.measure.store_sql import masked


def add_parsers(sub) -> None:
    """Register devices, bench, profile and example."""
    p = sub.add_parser("devices", help="list the inventory's devices (and discovered agents) with their health")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each device")
    p.add_argument("--discover", action="store_true",
                   help="also browse zeroconf for agents advertising _edgefarm._tcp (farm-agent --advertise)")
    p.add_argument("--interface", action="append", default=[], metavar="ADDRESS",
                   help="browse only on this interface address, e.g. 127.0.0.1 (repeatable; implies --discover)")
    p.add_argument("--discover-seconds", type=float, default=2.0, help="how long to browse (default 2)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("bench", help="measure a model's latency on a device")
    add_measure_flags(p)
    add_export_times(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("profile", help="per-layer profile of a model on a device")
    add_measure_flags(p)
    p.add_argument("--iterations", type=int, default=MeasureSettings().profile_iterations,
                   help="profiled runs after warm-up")
    p.add_argument("--top", type=int, default=25, help="rows to show")
    p.add_argument("--bottleneck-percent", type=float, default=BOTTLENECK_PERCENT,
                   help=f"mark layers taking at least this share of the time (default {BOTTLENECK_PERCENT:g})")
    p.add_argument("--plot", type=Path, default=None, help="write a bar chart of the slowest layers (PNG)")
    p.add_argument("--trace", type=Path, default=None, metavar="FILE.json",
                   help="write the profile as Chrome-trace JSON (open it in ui.perfetto.dev or chrome://tracing)")
    add_export_times(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("example", help="write (or locate) a built-in example model")
    p.add_argument("name", nargs="?", default="mobilenetv2")
    p.add_argument("-o", "--output", type=Path, default=None)
    p.set_defaults(func=cmd_example)


def add_export_times(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export-times", type=Path, default=None, metavar="FILE",
                   help="write every iteration's time in ms, in loop order: FILE.csv or FILE.json")


def cmd_devices(args: argparse.Namespace) -> int:
    from controller.fleet.devices import device_rows

    interfaces = args.interface or None
    rows = device_rows(args.inventory, timeout=args.timeout, discover=args.discover or bool(interfaces),
                       interfaces=interfaces, discover_seconds=args.discover_seconds)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0 if all(r.status == "ok" for r in rows) else 1
    for r in rows:
        head = f"{r.name:<14} {r.device_class or '-':<12} {r.address:<24} {r.source:<10}"
        if r.status != "ok":
            print(f"{head} {r.status.upper()}: {r.error}")
            continue
        i = r.info
        backends = ", ".join(backend_label(b) for b in i.get("backends", []))
        print(f"{head} ok  {i['arch']}  {i['cpu_model']}  {i['cores']} cores  "
              f"{int(i['memory_bytes']) / 2**30:.1f} GiB  {i['os']}  [{backends}]  agent {i['agent_version']}")
    return 0 if all(r.status == "ok" for r in rows) else 1


def backend_label(backend: dict) -> str:
    """'onnxruntime 1.23.2'; a backend that runs through a command-line tool says so, and why (TensorRT
    through trtexec where its Python bindings do not load into the agent's Python: JetPack 5's are 3.8)."""
    label = f"{backend['name']} {backend['version']}"
    providers = list(backend.get("providers") or [])
    if providers and providers[0] == "trtexec":
        label += " via trtexec" + (f" ({providers[1]})" if len(providers) > 1 else "")
    return label


def cmd_bench(args: argparse.Namespace) -> int:
    from controller.measure.api import bench
    from controller.measure.trace import check_times_path

    say_example(args)
    if args.export_times:
        check_times_path(args.export_times)
    res = bench(args.model, args.device, measure_settings(args), store=args.store, inventory=args.inventory,
                progress=None if args.quiet else progress_printer())
    if args.export_times:
        res.export_times(args.export_times)
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    lat, tput = res.latency_ms, res.throughput
    print(f"{res.model} on {res.device} ({res.device_class}), {res.backend} {res.backend_version}, "
          f"{res.threads} threads")
    print(f"  latency ms   min {lat['min']:.3f}  p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p95 {lat['p95']:.3f}  "
          f"p99 {lat['p99']:.3f}  max {lat['max']:.3f}  mean {lat['mean']:.3f}  std {lat['std']:.3f}")
    samples = f", {tput['samples_per_s']:.1f} samples/s (batch {tput['batch']})" if tput["batch"] else ""
    print(f"  throughput   {tput['inferences_per_s']:.1f} inferences/s one after another{samples}")
    print(f"  iterations   {res.iterations} in {res.measured_seconds:.2f} s  (cv {res.cv:.3f})")
    print(f"  load {res.load_ms:.1f} ms, first inference {res.first_inference_ms:.1f} ms, "
          f"peak memory {res.peak_memory_bytes / 2**20:.0f} MiB")
    print(f"  uploaded     {res.upload_bytes} model bytes")
    for flag in res.flags:
        print(f"  flag         {flag_text(flag, res.cv)}")
    if args.export_times:
        print(f"  times        written to {args.export_times}")
    print(f"  stored       run {res.run_id} in {masked(args.store)}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from controller.measure.api import profile
    from controller.measure.trace import check_times_path
    from optimizers.graph.flops import format_flops, format_total

    say_example(args)
    if args.export_times:
        check_times_path(args.export_times)
    res = profile(args.model, args.device, measure_settings(args), store=args.store, inventory=args.inventory,
                  progress=None if args.quiet else progress_printer(),
                  bottleneck_percent=args.bottleneck_percent)
    if args.trace:
        res.write_trace(args.trace)
    if args.export_times:
        res.export_times(args.export_times)
    if args.plot:
        from controller.measure.report import layer_plot_png

        Path(args.plot).write_bytes(layer_plot_png(res.layers, args.top))
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    print(f"{res.model} on {res.device}, {res.backend} {res.backend_version}, {res.threads} threads: "
          f"{res.total_ms:.3f} ms per inference over {res.iterations} profiled runs, "
          f"{format_total(res.total_flops, res.flops_unknown_ops)}")
    print(f"{'':2}{'layer':<40} {'op':<22} {'ms':>8} {'%':>6} {'MFLOPs':>9} {'GFLOP/s':>8} {'KiB':>8}")
    for r in res.layers[: args.top]:
        mark = "*" if r["name"] in res.bottlenecks else " "
        print(f"{mark} {r['label'][:40]:<40} {r['op_type'][:22]:<22} {r['time_ms']:8.3f} {r['percent']:6.1f} "
              f"{format_flops(r['flops']):>9} {format_flops(r['gflops_per_s'], 1):>8} "
              f"{int(r['memory_bytes']) / 1024:8.0f}")
    if len(res.layers) > args.top:
        print(f"  ... {len(res.layers) - args.top} more layers (--top N shows more)")
    print(f"* bottleneck: {res.bottleneck_percent:g}% or more of the time "
          f"({len(res.bottlenecks)} layer{'s' if len(res.bottlenecks) != 1 else ''})")
    for what, path in (("plot", args.plot), ("trace", args.trace), ("times", args.export_times)):
        if path:
            print(f"{what} written to {path}")
    print(f"stored as run {res.run_id} in {masked(args.store)}")
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    from controller.measure.examples import example_model

    src = example_model(args.name)
    if args.output:
        shutil.copyfile(src, args.output)
        print(args.output)
    else:
        print(src)
    return 0
