"""INT8 on real CNNs against ONNX Runtime's one-line `quantize_static`, at 1 thread on a local farm-agent:
YOLOv8n (as shipped in the nudenet wheel, 1x3x320x320, SiLU) and PP-OCRv4's text detector (from the
rapidocr-onnxruntime wheel, 320x320, hard-swish), both calibrated and evaluated on scikit-image's sample
photos, and MobileNetV2 (the built-in example, synthetic inputs).

Variants: FP32; FP16; plain quantize_static in its bare defaults (QDQ, S8S8, per-tensor) and in the
strong form (QDQ, per-channel, U8S8: QUInt8 activations, QInt8 weights); our Quantizer default (U8S8,
every op but the protected nodes); and from one `farmctl optimize --techniques fuse,fp16,int8,int8-measured,
rewrite` run: its S8S8 and compute-op variants, each operator rewrite alone and + INT8, int8-measured, and
its choice. Each is timed in --rounds loops paired with FP32 (one inference of each in turn, who runs
first swapped every other loop): speedup = the median of the paired ratios with its 95 % interval; p50 =
the variant's own in its least disturbed loop; fidelity = output cosine vs FP32 (worst output, all
samples). Every INT8 variant is also timed in --rounds loops paired with the strong plain form: "vs
strong plain" is that paired speedup (above 1.00: faster than the plain tool).

    python benchmarks/detectors.py [--rounds 3] [--models example:yolov8n,...] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402

STRONG = "plain quantize_static (per-channel U8S8)"
DEFAULT = "Quantizer default (U8S8, every op)"
TECHNIQUES = "fuse,fp16,int8,int8-measured,rewrite"
# goals (issue 14), against the strong plain form: p50 ratios, i.e. 1 / paired speedup
CHOICE_GOAL, DEFAULT_GOAL = 0.90, 1.05


@dataclass
class Row:
    name: str
    path: Path
    int8: bool
    p50: float = 0.0
    ratio: object = None          # PairedRatio vs FP32
    vs_plain: object = None       # PairedRatio vs the strong plain form (INT8 variants)
    fidelity: float = 0.0


def plain_quantize_static(source, out: Path, strong: bool) -> Path:
    """ONNX Runtime's quantize_static as a user calls it: bare defaults, or per-channel U8S8."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(source.calibration.feeds)

        def get_next(self):
            return next(self.it, None)

    options = ({"quant_format": QuantFormat.QDQ, "per_channel": True, "activation_type": QuantType.QUInt8,
                "weight_type": QuantType.QInt8} if strong else {})
    quantize_static(str(source.baseline), str(out), Reader(), **options)
    return out


def variants_of(source, out: Path, optimized, log) -> tuple[list[Row], list[str]]:
    """Every file to compare, and notes (what optimize skipped and why)."""
    from optimizers import Quantizer

    log("quantizing: FP16, plain (bare and strong), Quantizer default")
    rows = [Row("FP16", Quantizer("fp16").quantize(source.baseline, output=out / "fp16.onnx").path, False),
            Row("plain quantize_static (bare defaults)", plain_quantize_static(source, out / "plain-bare.onnx", False),
                True),
            Row(STRONG, plain_quantize_static(source, out / "plain-u8s8.onnx", True), True),
            Row(DEFAULT, Quantizer("int8").quantize(source.baseline, calibration_data=source.calibration,
                                                    output=out / "default.onnx").path, True)]
    dev = optimized.devices[0]
    shown = {"int8-minmax-s8s8": "Quantizer S8S8", "int8-minmax-compute-ops": "Quantizer compute ops only"}
    for c in dev.candidates:
        if c.status in ("ok", "rejected") and c.path and (
                c.name in shown or c.name.startswith("rewrite-") or c.name == "int8-measured"):
            rows.append(Row(shown.get(c.name, c.name), Path(c.path), "int8" in c.techniques))
    chosen = Path(dev.artifact) if dev.artifact else source.baseline
    techniques = dev.row(dev.chosen).techniques if dev.chosen else []
    rows.append(Row(f"farmctl optimize's choice: {dev.chosen or 'none (FP32)'}", chosen, "int8" in techniques))
    notes = [f"{s['technique']}: {s['reason']}" for s in optimized.skipped
             if s["technique"] in ("int8-measured", "rewrite")]
    return rows, notes


def paired(client, base_ref, path: Path, settings, store, rounds: int, first=None):
    """PairedRounds of `path` against base_ref: `first` (a measure_on result's pair) plus more loops."""
    from controller.measure.paired import PairedRounds, paired_loop
    from controller.measure.preflight import check_model

    pairs = PairedRounds()
    cand = check_model(path, settings.input_shapes)
    if first is not None:
        pairs.add(*first)
    for rnd in range(len(pairs.rounds), rounds):
        pairs.add(*paired_loop(client, base_ref, cand, settings, store, swapped=rnd % 2 == 1))
    return pairs


def goal_line(rows: list[Row]) -> str:
    def verdict(row: Row, goal: float, what: str) -> str:
        ratio = 1 / row.vs_plain.median
        met = "met" if ratio <= goal else f"missed by {ratio - goal:.2f}"
        return (f"{what} {ratio:.2f}x the strong plain form's p50 (paired {row.vs_plain.text()}; goal <= "
                f"{goal:.2f}x: {met})")

    choice = rows[-1]
    default = next(r for r in rows if r.name == DEFAULT)
    plain_fidelity = next(r for r in rows if r.name == STRONG).fidelity
    parts = [verdict(default, DEFAULT_GOAL, "Quantizer default:")]
    parts.append(verdict(choice, CHOICE_GOAL, "choice:") + ("" if choice.fidelity >= plain_fidelity else
                 f" at fidelity {choice.fidelity:.4f}, below plain's {plain_fidelity:.4f}"))
    return "Goals: " + "; ".join(parts) + "."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--models", default="example:yolov8n,example:ppocr-det,example:mobilenetv2")
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()

    from controller.fleet.local import LocalAgent
    from controller.measure.preflight import check_model
    from controller.measure.settings import MeasureSettings
    from controller.measure.store import ResultsStore
    from controller.optimization.api import optimize
    from controller.optimization.quality import stack_inputs
    from controller.optimization.measuring import EvalSet, measure_on
    from controller.optimization.sources import onnx_source

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    lines = [f"Measured on {machine()}, by `python benchmarks/detectors.py`: a local farm-agent, ONNX Runtime "
             f"CPU, 1 thread; each variant timed in {args.rounds} loops paired with FP32: speedup = median of "
             "the paired ratios (95 % interval), p50 = the variant's own in its least disturbed loop, "
             "fidelity = output cosine vs FP32 (worst output over all samples); \"vs strong plain\" = the "
             f"INT8 variant's (and the choice's) speedup in {args.rounds} more loops paired with plain per-channel U8S8 "
             "quantize_static (below 1.00: slower than the plain tool). optimize ran "
             f"`--techniques {TECHNIQUES}`.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            source = onnx_source(model)
            out = work / model.replace(":", "-")
            out.mkdir()
            settings = MeasureSettings(threads=1, warmup=5, min_iterations=20, min_seconds=args.min_seconds,
                                       input_shapes=source.input_shapes)
            log(f"{model}: farmctl optimize --techniques {TECHNIQUES}")
            optimized = optimize(model, ["local"], techniques=TECHNIQUES, settings=settings,
                                 out_dir=out / "optimize", store=work / "optimize.db", progress=log)
            rows, notes = variants_of(source, out, optimized, log)
            agent = LocalAgent(cache_dir=work / "agent", name="bench")
            client = agent.start()
            store = ResultsStore(work / "paired.db")
            inputs = stack_inputs(source.evaluation)
            try:
                base_ref = check_model(source.baseline, source.input_shapes)
                base = measure_on(client, source.baseline, settings, store, EvalSet(inputs))
                strong_ref = check_model(next(r.path for r in rows if r.name == STRONG), source.input_shapes)
                for row in rows:
                    m = measure_on(client, row.path, settings, store, EvalSet(inputs), base.outputs,
                                   baseline=base_ref)
                    pairs = paired(client, base_ref, row.path, settings, store, args.rounds, m.pair)
                    row.p50, row.ratio, row.fidelity = pairs.least_disturbed()["p50"], pairs.ratio(), m.quality.fidelity
                    if (row.int8 or row is rows[-1]) and row.name != STRONG:   # INT8 rows and the choice
                        row.vs_plain = paired(client, strong_ref, row.path, settings, store, args.rounds).ratio()
                    log(f"{model}: {row.name}: {row.ratio.text()}, fidelity {row.fidelity:.4f}"
                        + (f", vs strong plain {row.vs_plain.text()}" if row.vs_plain else ""))
            finally:
                store.close()
                agent.stop()
            lines += [f"**{model}** (FP32 p50 {base['latency_ms']['p50']:.2f} ms; {source.notes[0]})", "",
                      "| variant | p50 ms | speedup vs FP32 (95 % CI) | vs strong plain (95 % CI) | fidelity | size MB |",
                      "|---|---:|---:|---:|---:|---:|"]
            for r in rows:
                plain = r.vs_plain.text() if r.vs_plain else ("1.00x (itself)" if r.name == STRONG else "-")
                lines.append(f"| {r.name} | {r.p50:.2f} | {r.ratio.text()} | {plain} | {r.fidelity:.4f} | "
                             f"{r.path.stat().st_size / 1e6:.2f} |")
            lines += ["", goal_line(rows)] + [f"Skipped by optimize: {n}" for n in notes] + [""]
    return publish("detectors", "\n".join(lines), args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
