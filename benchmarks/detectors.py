"""INT8 on real CNNs against ONNX Runtime's one-line `quantize_static`, at 1 thread on a local farm-agent:
YOLOv8n (as shipped in the nudenet wheel, 1x3x320x320, calibrated and evaluated on scikit-image's sample
photos) and MobileNetV2 (the built-in example, synthetic inputs).

Variants: FP32; FP16; plain quantize_static in its bare defaults (QDQ, S8S8, per-tensor) and in the
strong form (QDQ, per-channel, U8S8: QUInt8 activations, QInt8 weights); our Quantizer default (U8S8,
the compute ops); our S8S8 and every-op (op_types=(): all but LayerNormalization and the protected nodes)
variants; and the choice of `farmctl optimize --techniques fuse,fp16,int8`. Each is timed in --rounds
loops paired with FP32 (one inference of each in turn, who runs first swapped every other loop):
speedup = the median of the paired ratios with its 95 % interval; p50 = the variant's own in its least
disturbed loop; fidelity = output cosine vs FP32 (worst output, all samples).

    python benchmarks/detectors.py [--rounds 3] [--models example:yolov8n,example:mobilenetv2] [--write-readme]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402


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


def variants_of(source, out: Path, log) -> dict[str, Path]:
    """Every file to compare, made from the source's FP32 model and calibration data."""
    from optimizers import Quantizer
    calib = source.calibration
    made = {"FP32": source.baseline,
            "FP16": Quantizer("fp16").quantize(source.baseline, output=out / "fp16.onnx").path,
            "plain quantize_static (bare defaults)": plain_quantize_static(source, out / "plain-bare.onnx", False),
            "plain quantize_static (per-channel U8S8)": plain_quantize_static(source, out / "plain-u8s8.onnx",
                                                                             True)}
    for name, options in (("Quantizer default (U8S8, compute ops)", {}),
                          ("Quantizer S8S8", {"activation_type": "int8"}),
                          ("Quantizer every op", {"op_types": ()})):
        log(f"quantizing: {name}")
        made[name] = Quantizer("int8", **options).quantize(source.baseline, calibration_data=calib,
                                                           output=out / f"{len(made)}.onnx").path
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--models", default="example:yolov8n,example:mobilenetv2")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()

    from controller.local import LocalAgent
    from controller.models import check_model
    from controller.optimize import measure_on, optimize
    from controller.paired import PairedRounds, paired_loop
    from controller.quality import stack_inputs
    from controller.settings import MeasureSettings
    from controller.sources import onnx_source
    from controller.store import ResultsStore

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    lines = [f"Measured on {machine()}, by `python benchmarks/detectors.py`: a local farm-agent, ONNX Runtime "
             f"CPU, 1 thread; each variant timed in {args.rounds} loops paired with FP32: speedup = median of "
             "the paired ratios (95 % interval), p50 = the variant's own in its least disturbed loop, "
             "fidelity = output cosine vs FP32 (worst output over all samples), \"vs strong plain\" = its "
             "speedup over plain per-channel U8S8 quantize_static's (< 1.00: slower than the plain tool).", ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            source = onnx_source(model)
            out = work / model.replace(":", "-")
            out.mkdir()
            settings = MeasureSettings(threads=1, warmup=5, min_iterations=20, min_seconds=args.min_seconds,
                                       input_shapes=source.input_shapes)
            variants = variants_of(source, out, log)
            result = optimize(model, ["local"], techniques="fuse,fp16,int8", settings=settings,
                              out_dir=out / "optimize", store=work / "optimize.db", progress=log)
            dev = result.devices[0]
            variants[f"farmctl optimize's choice: {dev.chosen or 'none'}"] = (
                Path(dev.artifact) if dev.artifact else source.baseline)
            agent = LocalAgent(cache_dir=work / "agent", name="bench")
            client = agent.start()
            store = ResultsStore(work / "paired.db")
            inputs, rows = stack_inputs(source.evaluation), []
            try:
                base_ref = check_model(source.baseline, source.input_shapes)
                base = measure_on(client, source.baseline, settings, store, inputs, None, None)
                for name, path in variants.items():
                    if name == "FP32":
                        continue
                    m = measure_on(client, path, settings, store, inputs, base["outputs"], None, baseline=base_ref)
                    pairs = PairedRounds()
                    pairs.add(*m["pair"])
                    cand = check_model(path, source.input_shapes)
                    for rnd in range(1, args.rounds):
                        pairs.add(*paired_loop(client, base_ref, cand, settings, store, swapped=rnd % 2 == 1))
                    ratio = pairs.ratio()
                    log(f"{model}: {name}: {ratio.text()}, fidelity {m['fidelity']:.4f}")
                    rows.append((name, pairs.least_disturbed()["p50"], ratio, m["fidelity"], path.stat().st_size))
            finally:
                store.close()
                agent.stop()
            strong = next(r for r in rows if r[0].endswith("(per-channel U8S8)"))[2].median
            lines += [f"**{model}** (FP32 p50 {base['latency_ms']['p50']:.2f} ms, {source.notes[0]})", "",
                      "| variant | p50 ms | speedup vs FP32 (95 % CI) | vs strong plain | fidelity | size MB |",
                      "|---|---:|---:|---:|---:|---:|"]
            for name, p50, ratio, fid, size in rows:
                lines.append(f"| {name} | {p50:.2f} | {ratio.text()} | {ratio.median / strong:.2f}x | "
                             f"{fid:.4f} | {size / 1e6:.2f} |")
            lines.append("")
    return publish("detectors", "\n".join(lines), args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
