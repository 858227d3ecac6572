"""`farmctl optimize` on the built-in example (the demo's technique set; the example itself trained beforehand, outside the timed runs) against an agent
pinned to the last CPU
(standing in for a remote board) with the controller on the first: once in the sequential order (every
candidate built, then measured) and once pipelined (each candidate measured while the next builds), in that
order, each on a fresh store and output folder. Reports the wall times, their ratio, the choice and its
speedup interval in each.

    python benchmarks/pipelining.py [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402


def one_run(work: Path, address: str, pipelined: bool, log) -> tuple[float, object]:
    """One optimize run against the pinned agent; (wall seconds, OptimizeResult)."""
    from controller.optimization import api
    from controller.optimization.pipelining import Schedule, choose_schedule

    api.choose_schedule = choose_schedule if pipelined else (
        lambda pools, controller_cpus=None: Schedule(False, "sequential: forced by benchmarks/pipelining.py"))
    started = time.perf_counter()
    result = api.optimize(None, [address], out_dir=work / ("pipelined" if pipelined else "sequential"),
                          store=work / f"{'pipelined' if pipelined else 'sequential'}.db", progress=log)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-docs", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- pipelining:start/end --> markers")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("needs two CPUs: one for the controller, one for the agent", file=sys.stderr)
        return 2
    from controller.fleet.local import LocalAgent

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    from optimizers.data.digits import pretrained_example

    pretrained_example(progress=log)      # trained (or found in the cache) before either timed run
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with LocalAgent(cache_dir=work / "agent", name="board", cpus={cpus[-1]}) as client:
            os.sched_setaffinity(0, set(cpus[:-1]))      # the controller (and its training) on the other CPUs
            for pipelined in (False, True):
                wall, result = one_run(work, client.address, pipelined, log)
                dev = result.devices[0]
                row = dev.row(dev.chosen) if dev.chosen else None
                ratio = row.ratio() if row is not None else None
                rows.append((pipelined, wall, dev.chosen, ratio.text() if ratio else "-", len(dev.candidates)))
    sequential = rows[0][1]
    lines = [f"Measured on {machine()}, by `python benchmarks/pipelining.py`: `farmctl optimize` on the built-in "
             f"example with its default techniques, the agent pinned to CPU {cpus[-1]} and the controller to "
             f"CPU(s) {cpus[:-1]}, the sequential run first, then the pipelined one.", "",
             "| order | wall time | vs sequential | chosen | its speedup (95 % interval) | candidates |",
             "|---|---:|---:|---|---:|---:|"]
    for pipelined, wall, chosen, speedup, n in rows:
        lines.append(f"| {'pipelined' if pipelined else 'sequential'} | {wall / 60:.1f} min | "
                     f"{wall / sequential:.2f}x | {chosen or 'none'} | {speedup} | {n} |")
    return publish("pipelining", "\n".join(lines), args.write_docs)


if __name__ == "__main__":
    sys.exit(main())
