"""`farmctl optimize` end to end, at 1 thread on a local farm-agent, on the built-in PyTorch example and
on a real ONNX model from a package (all-MiniLM-L6-v2), against ONNX Runtime's plain `quantize_static`
(MinMax, QDQ, per-channel) on the same model in the same run.

After each optimize run, the chosen candidate and the plain quantize_static model are timed again on one
fresh agent, each in --rounds loops paired with the baseline (one inference of each in turn, who runs
first swapped every other loop): the speedup is the median of the paired ratios with its 95 % interval,
p50 the variant's own p50 in the loop where the baseline ran fastest. Accuracy/fidelity are computed
from the agent's own outputs.

    python benchmarks/optimize.py [--rounds 3] [--models example,example:minilm] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402


def plain_quantize_static(source, out: Path) -> Path:
    """ONNX Runtime's quantize_static as a user would call it: MinMax, QDQ, per-channel, no pre-processing."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(source.calibration.feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(source.baseline), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--models", default="example,example:minilm,example:minilm@0.95",
                        help="comma separated; MODEL@F sets --min-fidelity F (a rerun on the same model "
                             "resumes every measurement from the store, so it costs only the choice)")
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()

    from controller.fleet.local import LocalAgent
    from controller.measure.paired import PairedRounds, paired_loop
    from controller.measure.preflight import check_model
    from controller.measure.settings import MeasureSettings
    from controller.measure.store import ResultsStore
    from controller.optimization.api import Constraints, optimize
    from controller.optimization.quality import stack_inputs
    from controller.optimization.measuring import EvalSet, measure_on
    from controller.optimization.sources import example_source, onnx_source

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    settings = MeasureSettings(threads=1, warmup=10, min_iterations=100, min_seconds=args.min_seconds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in args.models.split(","):
            model, _, fidelity = spec.partition("@")
            arg = None if model == "example" else model
            out = work / model.replace(":", "-")
            constraints = Constraints(min_fidelity=float(fidelity)) if fidelity else None
            t0 = time.perf_counter()
            result = optimize(arg, ["local"], constraints=constraints, settings=settings, out_dir=out,
                              store=work / "optimize.db", progress=log)
            wall = time.perf_counter() - t0
            dev = result.devices[0]
            source = example_source(out) if arg is None else onnx_source(arg)
            settings_shaped = MeasureSettings(**{**settings.as_dict(), "input_shapes": source.input_shapes})
            plain = plain_quantize_static(source, out / "plain-quantize-static.onnx")
            chosen_row = dev.row(dev.chosen) if dev.chosen else None
            variants = {"baseline": source.baseline, "plain quantize_static": plain}
            if chosen_row:
                variants[f"chosen: {dev.chosen}"] = Path(dev.artifact)
            inputs = stack_inputs(source.evaluation)
            labels = source.evaluation.labels
            agent = LocalAgent(cache_dir=work / "agent", name="bench")
            client = agent.start()
            store = ResultsStore(work / "paired.db")
            paired = {name: PairedRounds() for name in variants if name != "baseline"}
            quality: dict = {}
            try:
                base_ref = check_model(source.baseline, settings_shaped.input_shapes)
                quality["baseline"] = m = measure_on(client, source.baseline, settings_shaped, store,
                                                     EvalSet(inputs, labels))
                base_p50 = m.latency_ms["p50"]
                for name in paired:
                    quality[name] = measure_on(client, variants[name], settings_shaped, store, EvalSet(inputs, labels),
                                               quality["baseline"].outputs, baseline=base_ref)
                    paired[name].add(*quality[name].pair)
                for rnd in range(1, args.rounds):
                    for name in paired:
                        cand = check_model(variants[name], settings_shaped.input_shapes)
                        this = paired[name].add(*paired_loop(client, base_ref, cand, settings_shaped, store,
                                                             swapped=rnd % 2 == 1))
                        log(f"{model} loop {rnd + 1}: {name} paired with the baseline: {this:.2f}x")
            finally:
                store.close()
                agent.stop()
            c = result.constraints
            label = (f"{result.model} (accuracy drop ≤ {c.max_accuracy_drop:g} points)" if c.max_accuracy_drop
                     is not None else f"{result.model} (fidelity ≥ {c.min_fidelity:g})")
            for name, path in variants.items():
                q = quality[name]
                ratio = paired[name].ratio() if name in paired else None
                rows.append({"model": label, "variant": name,
                             "p50": paired[name].least_disturbed()["p50"] if ratio else base_p50,
                             "speedup": ratio.text() if ratio else "1.00x",
                             "accuracy": q.quality.accuracy, "fidelity": q.quality.fidelity,
                             "size": path.stat().st_size, "wall": wall if name.startswith("chosen") else None,
                             "candidates": len(dev.candidates) if name.startswith("chosen") else None})
            if not chosen_row:
                rows.append({"model": label, "variant": f"chosen: none ({dev.failure})", "p50": None})
    lines = [f"Measured on {machine()}, by `python benchmarks/optimize.py`: a local farm-agent, ONNX Runtime "
             f"CPU, 1 thread; after the optimize run, each variant timed in {args.rounds} loops paired with the "
             "baseline on one agent: speedup = median of the paired ratios (95 % interval), p50 = the "
             "variant's own in its least disturbed loop; "
             "accuracy on the example's 750-image validation split, fidelity = output cosine vs the baseline "
             "(MiniLM: its model card's sentences).", "",
             "| model | variant | p50 ms | speedup | accuracy | fidelity | size MB | optimize wall time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["p50"] is None:
            lines.append(f"| {r['model']} | {r['variant']} | | | | | | |")
            continue
        acc = f"{r['accuracy'] * 100:.2f} %" if r.get("accuracy") is not None else "-"
        fid = f"{r['fidelity']:.4f}" if r.get("fidelity") is not None else "-"
        wall = f"{r['wall']:.0f} s ({r['candidates']} candidates)" if r.get("wall") is not None else ""
        lines.append(f"| {r['model']} | {r['variant']} | {r['p50']:.3f} | {r['speedup']} | {acc} | {fid} | "
                     f"{r['size'] / 1e6:.2f} | {wall} |")
    return publish("optimize", "\n".join(lines), args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
