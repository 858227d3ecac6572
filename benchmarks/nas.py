"""NAS on a local farm-agent (ONNX Runtime CPU, 1 thread), in one run:

1. the per-block latency table's prediction against whole measured architectures (sampled at random);
2. the architecture found under a latency limit equal to the hand-made example's measured p50, trained
   like the example (8 epochs), against the hand-made example: test accuracy, p50 (alternating rounds,
   median), parameters.

    python benchmarks/nas.py [--check 20] [--iterations 12] [--population 6] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine, publish  # noqa: E402

if TYPE_CHECKING:
    from controller.optimization.nas import PredictionCheck


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=int, default=20, help="sampled architectures for the predictor check")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()


    from controller.fleet.local import LocalAgent
    from controller.measure.store import ResultsStore
    from controller.measure.undisturbed import measure_undisturbed
    from controller.optimization.nas import LUT_SETTINGS, farm_latency_table, run_nas
    from controller.optimization.nas import prediction_errors as check_predictor
    from optimizers import count_params, export_onnx, pretrained_example
    from optimizers.nas.space import MobileNetV3Space
    from optimizers.pytorch.training import accuracy

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    example, data, _ = pretrained_example(progress=log)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    if pinned:   # the controller (export, training) on one CPU, the agent and its jobs on another
        os.sched_setaffinity(0, set(cpus[:-1]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        agent = LocalAgent(cache_dir=work / "agent", name="bench", cpus={cpus[-1]} if pinned else None)
        client = agent.start()
        store = ResultsStore(work / "nas.db")
        try:
            space = MobileNetV3Space()
            table = farm_latency_table(client, store, space, progress=log)
            checks = check_predictor(client, store, table, space, n=args.check, progress=log)
            reference = table.context
            example_path = export_onnx(example, work / "example.onnx")
            limit = measure_undisturbed([example_path], client, LUT_SETTINGS, store, reference)[0].ms
            log(f"latency limit = the hand-made example's p50: {limit:.3f} ms")
            run = run_nas(client, {"latency_ms": limit}, iterations=args.iterations, population=args.population,
                          proxy_epochs=2, proxy_samples=1500,
                          out_dir=work / "nas", store=store, progress=log)
            rows = {"hand-made example (MobileNetV2-style)": (example_path, accuracy(example, data.test),
                                                              count_params(example))}
            if run.best:
                rows[f"NAS best: {run.best['describe']}"] = (Path(run.model_path), run.accuracy, run.params)
            p50s: dict[str, list[float]] = {k: [] for k in rows}
            for rnd in range(args.rounds):
                for name in (list(rows) if rnd % 2 == 0 else list(rows)[::-1]):
                    p50s[name].append(measure_undisturbed([rows[name][0]], client, LUT_SETTINGS, store,
                                                          reference)[0].ms)
            plot = _plot(checks, ROOT / "benchmarks" / "results" / "nas-predictor.png")
        finally:
            store.close()
            agent.stop()
    errs = [abs(c.error) for c in checks]
    within = sum(e <= 0.10 for e in errs) / len(errs)
    raw = [abs(c.predicted_ms - c.raw_ms) / c.raw_ms for c in checks]
    undisturbed = sum(c.undisturbed > 0 for c in checks)
    lines = [f"Measured on {machine()}, by `python benchmarks/nas.py`: a local farm-agent"
             f"{f' pinned to CPU {cpus[-1]} (the controller on the others)' if pinned else ''}, ONNX Runtime CPU, "
             f"1 thread. Latency table: {run.table_blocks} entries measured on the agent (block configurations "
             "and a ReLU probe per input shape).", "",
             f"Predictor vs whole measured models, {len(checks)} random architectures, each measured beside the "
             f"reference model ({reference.key}, nominal p50 {reference.nominal_ms * 1000:.1f} us): median |error| "
             f"{statistics.median(errs) * 100:.1f} %, max {max(errs) * 100:.1f} %, within 10 %: "
             f"{within * 100:.0f} % (goal: 90 %). {undisturbed} of {len(checks)} got an undisturbed measurement "
             f"within {reference.rule.max_attempts} attempts. Against the raw p50s of the same measurements (no scaling by "
             f"the reference): median {statistics.median(raw) * 100:.1f} %, within 10 %: "
             f"{sum(e <= 0.10 for e in raw) / len(raw) * 100:.0f} %. Plot: `benchmarks/results/{plot.name}`.", "",
             f"Search: {len(run.history)} architectures trained as proxies (2 epochs on 1,500 images), "
             f"regularized evolution, {run.wall_seconds:.0f} s in all; limit = the example's p50 "
             f"({limit:.3f} ms).", "",
             "| model | test accuracy | p50 ms (undisturbed, median of rounds) | parameters |",
             "|---|---:|---:|---:|"]
    for name, (_, acc, params) in rows.items():
        lines.append(f"| {name} | {acc * 100:.2f} % | {statistics.median(p50s[name]):.3f} | {params:,} |")
    if not run.best:
        lines.append(f"| NAS: {run.failure} | | | |")
    return publish("nas", "\n".join(lines), args.write_readme)


def _plot(checks: list[PredictionCheck], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    m = [c.measured_ms for c in checks]
    p = [c.predicted_ms for c in checks]
    ax.scatter(m, p, color="#4c78a8")
    lo, hi = min(m + p) * 0.9, max(m + p) * 1.1
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="exact")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="#ccc", alpha=0.4, label="±10 %")
    ax.set_xlabel("measured p50 of the whole model (ms)")
    ax.set_ylabel("predicted from the block table (ms)")
    ax.set_title("NAS latency predictor on the local agent")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
