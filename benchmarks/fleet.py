"""The fleet on this machine, in one run:

1. identical boards share the work: the same batch of benchmark jobs scheduled on a class of one agent,
   then of two agents, each agent pinned to its own core (`taskset`-style affinity), 1 thread per job;
   wall time of the batch and the ratio;
2. the LiteRT backend on MediaPipe's .tflite models (p50, XNNPACK, 1 thread) and how well its per-op
   profile (each op timed alone) adds up to the whole model.

    python benchmarks/fleet.py [--jobs 12] [--rounds 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12, help="benchmark jobs in the batch")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of 1 agent / 2 agents")
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()

    from controller.fleet.local import LocalAgent
    from controller.fleet.scheduler import Scheduler
    from controller.measure.api import bench, profile
    from controller.measure.examples import example_model
    from controller.measure.settings import MeasureSettings
    from controller.measure.store import ResultsStore

    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this benchmark pins one agent per core and needs 2 CPUs")
    settings = MeasureSettings(threads=1, warmup=10, min_iterations=200, min_seconds=1.0)
    model = example_model("mobilenetv2")
    walls: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        agents = [LocalAgent(cache_dir=work / f"a{i}", name=f"board-{i}", cpus={i}) for i in range(2)]
        clients = [a.start() for a in agents]
        store = ResultsStore(work / "fleet.db")
        try:
            for c in clients:                      # upload once, outside the timed batches
                bench(model, c, MeasureSettings(threads=1, min_iterations=5, min_seconds=0.0), store)
            for rnd in range(args.rounds):
                for n in ((1, 2) if rnd % 2 == 0 else (2, 1)):
                    pool = {f"board-{i}": clients[i] for i in range(n)}
                    with Scheduler({"x86": pool}) as sched:
                        t0 = time.perf_counter()
                        futures = [sched.submit("x86", f"job{j}", lambda c: bench(model, c, settings, store))
                                   for j in range(args.jobs)]
                        for f in futures:
                            f.result()
                        walls[n].append(time.perf_counter() - t0)
                        shares = {a: sum(1 for _, x in sched.assignments if x == a) for a in pool}
                    print(f"round {rnd + 1}: {n} agent(s): {walls[n][-1]:.1f} s, jobs per agent {shares}",
                          file=sys.stderr, flush=True)
            tflite_rows = _litert(clients[0], store, bench, profile)
        finally:
            store.close()
            for a in agents:
                a.stop()
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    lines = [f"Measured on {machine()}, by `python benchmarks/fleet.py`.", "",
             f"A batch of {args.jobs} benchmark jobs (the MobileNetV2 example, 1 thread, at least 200 runs and "
             f"1 s each) on a class of agents, each agent pinned to its own core; median of {args.rounds} "
             "alternating rounds:", "",
             "| agents in the class | batch wall time | speed-up |", "|---:|---:|---:|",
             f"| 1 | {one:.1f} s | 1.00x |", f"| 2 | {two:.1f} s | {one / two:.2f}x |", "",
             "LiteRT backend (`ai-edge-litert`, XNNPACK, 1 thread) on MediaPipe's models:", "",
             "| model | p50 ms | per-op profile: ops | sum of ops / whole model |", "|---|---:|---:|---:|"]
    lines += tflite_rows
    return publish("fleet", "\n".join(lines), args.write_readme)


def _litert(client, store, bench, profile) -> list[str]:
    from controller.measure.settings import MeasureSettings

    models = Path(sys.prefix) / "share" / "edgefarm-models"
    rows = []
    settings = MeasureSettings(threads=1, warmup=10, min_iterations=100, min_seconds=1.0, profile_iterations=10)
    for path in sorted(models.glob("*.tflite")):
        b = bench(path, client, settings, store)
        p = profile(path, client, settings, store)
        ratio = sum(r["time_ms"] for r in p.layers) / p.total_ms if p.total_ms else float("nan")
        rows.append(f"| {path.stem} | {b.latency_ms['p50']:.3f} | {len(p.layers)} | {ratio:.2f} |")
    if not rows:
        rows.append(f"| (no .tflite models in {models}: run `make setup`) | | | |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
