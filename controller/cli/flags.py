"""Flags and output helpers every farmctl command family shares: the measurement flags, the progress
printer, and what a result flag means where it is printed."""

from __future__ import annotations

import argparse
import sys

from agent.telemetry import NOISY_CV
from controller.errors import UsageError
from controller.measure.settings import PRIORITIES, MeasureSettings, parse_input_shape
from protos import agent_pb2 as pb


def add_measure_flags(p: argparse.ArgumentParser, model_help: str | None = None,
                       many_devices: bool = False) -> None:
    d = MeasureSettings()
    p.add_argument("model", nargs="?", default=None, help=model_help or
                   "an .onnx file (default: the built-in MobileNetV2 example; 'example:mobilenetv2')")
    if many_devices:
        p.add_argument("--device", action="append", default=None, help="inventory name or HOST:PORT, "
                       "repeatable (default: local, an agent farmctl starts on 127.0.0.1)")
        p.add_argument("--allow-mixed", action="store_true", help="let agents of one class share its jobs "
                       "even when their fingerprints (runtime versions, hardware) differ")
    else:
        p.add_argument("--device", default="local", help="inventory name or HOST:PORT (default: local, an "
                       "agent farmctl starts on 127.0.0.1)")
    p.add_argument("--threads", type=int, default=d.threads, help="intra-op threads (default: the "
                   "device's physical cores; the number used is recorded)")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"warm-up runs (default {d.warmup})")
    p.add_argument("--min-iterations", type=int, default=d.min_iterations,
                   help=f"measure at least this many runs (default {d.min_iterations})")
    p.add_argument("--min-seconds", type=float, default=d.min_seconds,
                   help=f"... and at least this long (default {d.min_seconds})")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help=f"stop measuring after this long (default {d.max_seconds})")
    add_input_shape_flag(p, "fix an input's dynamic dimensions, e.g. images=1,3,640,640 (repeatable)")
    p.add_argument("--time-limit", type=float, default=0.0, help="seconds the job may run on the agent "
                   "(default: the agent's, 600)")
    p.add_argument("--memory-limit-mb", type=float, default=0.0,
                   help="memory the job may use on the agent (default: the agent's, 80%% of RAM)")
    add_priority_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def add_input_shape_flag(p: argparse.ArgumentParser, text: str) -> None:
    """--input-shape NAME=D0,D1,... (repeatable); `input_shapes(args.input_shape)` reads it."""
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...", help=text)


def input_shapes(flags: list[str]) -> dict[str, list[int]]:
    """The --input-shape values as {input name: dims}."""
    return dict(parse_input_shape(s) for s in flags)


def add_priority_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--priority", choices=list(PRIORITIES), default=MeasureSettings().priority,
                   help="which waiting job a busy agent runs next: high before normal before low, first come "
                   "first served within one; a waiting job moves up a level every minute (the agent's "
                   "--priority-aging-s), so low ones still run (default normal)")


def measure_settings(args: argparse.Namespace) -> MeasureSettings:
    if args.min_seconds > args.max_seconds:
        raise UsageError(f"--min-seconds {args.min_seconds:g} is more than --max-seconds {args.max_seconds:g}: "
                         "the loop would stop before it may; lower --min-seconds or raise --max-seconds")
    shapes = input_shapes(args.input_shape)
    return MeasureSettings(threads=args.threads, warmup=args.warmup, min_iterations=args.min_iterations,
                           min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                           profile_iterations=getattr(args, "iterations", None) or MeasureSettings().profile_iterations,
                           input_shapes=shapes, time_limit_s=args.time_limit,
                           memory_limit_mb=args.memory_limit_mb, priority=args.priority)


def progress_printer(stream=sys.stderr):
    """A callback that prints job events as short lines on stderr."""

    def show(device: str, event: pb.RunEvent) -> None:
        which = event.WhichOneof("event")
        if which == "queued":
            line = f"queued at position {event.queued.position}"
            if event.queued.priority:   # agents older than priorities send none
                line += f", priority {pb.Priority.Name(event.queued.priority).removeprefix('PRIORITY_').lower()}"
        elif which == "started":
            line = f"started on {event.started.backend} {event.started.backend_version}"
        elif which == "progress":
            p = event.progress
            if p.phase == "load":   # nothing has run yet: say what it does, not "0 runs, 0.0 s"
                line = f"loading the model ({p.message})" if p.message else "loading the model"
            else:
                line = f"{p.phase}: {p.iterations} runs, {p.elapsed_s:.1f} s" + (f" ({p.message})" if p.message else "")
        elif which == "result":
            line = "done"
        elif which == "layers":
            line = f"profiled {len(event.layers.rows)} layers"
        else:
            return
        print(f"[{device}] {line}", file=stream, flush=True)

    return show


def flag_text(flag: str, cv: float | None) -> str:
    """A result flag with what it means and what to do, where it is printed."""
    if flag == "noisy":
        return (f"noisy: the timing varied (CV {cv:.1%} > {NOISY_CV:.0%}): other work shared the CPU; rerun on a "
                "quiet machine, or with a longer --min-seconds")
    if flag == "throttled":
        return ("throttled: the CPU ran below its maximum frequency (heat or a power cap) during the run; the "
                "numbers are lower than the device can do; cool it or wait, and rerun")
    return flag


EXAMPLE_NOTE = ("model: the built-in bench example, a MobileNetV2 on 1x3x224x224 with random weights (a speed "
                "test: `farmctl optimize` without a model uses its own trained 1x28x28 digits example; give a "
                "model file or example:NAME to measure another)")


def say_example(args: argparse.Namespace) -> None:
    """Bench and profile without a model say which example they measure, so it is never taken for optimize's."""
    if args.model is None and not args.quiet:
        print(EXAMPLE_NOTE, file=sys.stderr, flush=True)


def add_alias(p: argparse.ArgumentParser, old: str, new: str) -> None:
    """Keep an old spelling of a renamed flag working, hidden from --help: it sets the new flag's value."""
    canonical = next(a for a in p._actions if new in a.option_strings)
    p.add_argument(old, dest=canonical.dest, type=canonical.type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
