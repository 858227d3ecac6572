"""Fidelity: does `farmctl bench` report what a plain ONNX Runtime loop measures on the same model?

Runs, interleaved in one script run (ABBA order, to cancel drift), a plain timing loop in a fresh Python
process and `farmctl bench` (a real farmctl process driving a real embedded farm-agent over gRPC, which
times in its own child process) on the built-in MobileNetV2, with the same thread count, warm-up and
minimums. Reports each p50 and the ratio of their medians (target 0.97-1.03).

    python benchmarks/fidelity.py [--threads 1] [--rounds 20] [--min-seconds 1] [--write-docs]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import farmctl, machine, write_readme_section  # noqa: E402


def plain_loop(model: Path, threads: int, warmup: int, min_iterations: int, min_seconds: float) -> float:
    """The reference: a bare ORT session timed with perf_counter_ns around run() only; returns p50 ms."""
    import numpy as np
    import onnxruntime as ort

    from agent.stats import latency_stats

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    feeds = {"input": x}
    sess.run(None, feeds)
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    start = time.perf_counter_ns()
    while len(times) < min_iterations or time.perf_counter_ns() - start < min_seconds * 1e9:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append(time.perf_counter_ns() - t0)
    return latency_stats(times)["p50_ms"]


def plain_loop_process(model: Path, threads: int, warmup: int, min_iterations: int, min_seconds: float) -> float:
    """plain_loop in a fresh interpreter, as the agent's runner is; returns p50 ms."""
    out = subprocess.run([sys.executable, __file__, "--plain-once", str(model), "--threads", str(threads),
                          "--warmup", str(warmup), "--min-iterations", str(min_iterations),
                          "--min-seconds", str(min_seconds)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--min-iterations", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    parser.add_argument("--plain-once", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_once:
        print(plain_loop(args.plain_once, args.threads, args.warmup, args.min_iterations, args.min_seconds))
        return 0

    from controller.measure.examples import example_model

    model = example_model()
    flags = ["--threads", str(args.threads), "--warmup", str(args.warmup), "--min-iterations",
             str(args.min_iterations), "--min-seconds", str(args.min_seconds)]
    plain, farm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "fidelity.db")
        for i in range(args.rounds):
            for side in ("plain", "farm") if i % 2 == 0 else ("farm", "plain"):
                if side == "plain":
                    plain.append(plain_loop_process(model, args.threads, args.warmup, args.min_iterations,
                                                    args.min_seconds))
                else:
                    farm.append(farmctl("--store", store, "bench", str(model), *flags)[0]["latency_ms"]["p50"])
            print(f"round {i + 1}: plain ORT p50 {plain[-1]:.3f} ms, farmctl bench p50 {farm[-1]:.3f} ms, "
                  f"ratio {farm[-1] / plain[-1]:.3f}", flush=True)
    ratio = statistics.median(farm) / statistics.median(plain)
    verdict = "within" if 0.97 <= ratio <= 1.03 else "OUTSIDE"
    table = (f"| model | threads | plain ORT p50 (median of {args.rounds}) | farmctl bench p50 (median of "
             f"{args.rounds}) | ratio | target |\n|---|---|---|---|---|---|\n"
             f"| built-in MobileNetV2 (1x3x224x224) | {args.threads} | {statistics.median(plain):.3f} ms | "
             f"{statistics.median(farm):.3f} ms | **{ratio:.3f}** | 0.97-1.03 ({verdict}) |\n\n"
             f"Per round (plain / farmctl, ms): "
             + ", ".join(f"{p:.3f} / {f:.3f}" for p, f in zip(plain, farm))
             + f". Measured on {machine()}, {time.strftime('%Y-%m-%d')}, with "
             f"`python benchmarks/fidelity.py --threads {args.threads} --rounds {args.rounds} --min-seconds {args.min_seconds:g}`.\n")
    print(table)
    if args.write_readme:
        write_readme_section(f"fidelity-t{args.threads}", table)
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
