"""Pruning ONNX detectors that come without their training code (issue 31): nudenet's YOLOv8n and PaddleOCR's
PP-OCRv4 text detector, as shipped (dynamic dims, fixed here to 1x3x320x320), converted to PyTorch, pruned
at 20 / 30 / 50 % of the parameters, with and without label-free recovery (trained toward the original's
outputs on 48 other photos: scikit-learn's, matplotlib's, scikit-image's others and 40 LFW faces), exported
back to ONNX, and the 50 % model + INT8. The curve: quality vs paired speedup against FP32, at 1 thread on
a local farm-agent, every file timed in --rounds loops paired with FP32 (one inference of each in turn);
"vs plain INT8" is the paired speedup against ONNX Runtime's quantize_static (per-channel U8S8).

Quality, on the evaluation photos (scikit-image's 16, and for YOLOv8n 40 more LFW faces; never trained on): YOLOv8n: det-agreement (COCO
mAP@0.5 and @0.5:0.95 by pycocotools, the FP32 model's detections as ground truth; the number of those
boxes is reported: with few boxes the figure is coarse); PP-OCR: mask-iou@0.5 against the FP32 map.

    python benchmarks/detector_pruning.py [--rounds 3] [--recovery-minutes 8] [--models yolov8n,ppocr-det]
                                          [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402
from benchmarks.detectors import paired, plain_quantize_static  # noqa: E402

RATIOS = (0.2, 0.3, 0.5)
METRICS = {"yolov8n": "det-agreement", "ppocr-det": "mask-iou@0.5"}
SPEED_GOAL = 0.65            # the best candidate with agreement >= QUALITY_GOAL: <= 0.65x plain INT8's p50
QUALITY_GOAL = 0.90


@dataclass
class Row:
    name: str
    path: Path
    build_s: float = 0.0
    quality: float = 0.0
    strict: float | None = None
    ratio: object = None          # paired vs FP32
    vs_plain: object = None       # paired vs plain INT8
    params: str = ""


def outputs(path: Path, inputs: dict) -> list:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    import numpy as np
    return [np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
            for x in [inputs[name]]]


def evaluation_inputs(source, model: str, work: Path) -> dict:
    """The example's 16 evaluation photos and, for YOLOv8n (a person-part detector: few boxes on the 16),
    40 LFW faces the recovery never saw, loaded with the same preprocessing."""
    import numpy as np
    import onnx
    from PIL import Image

    from controller.measure.examples import lfw_faces
    from controller.optimization.quality import stack_inputs
    from controller.optimization.sources import EXAMPLE_PREPROCESS
    from optimizers.data.feeds import ImagePreprocess, load_data

    inputs = stack_inputs(source.evaluation)
    if model != "yolov8n":
        return inputs
    folder = work / "faces"
    folder.mkdir()
    for name, array in lfw_faces(2).items():
        Image.fromarray(array).convert("RGB").save(folder / f"{name}.png")
    faces = load_data(str(folder), onnx.load(str(source.baseline)), input_shapes=source.input_shapes,
                      preprocess=ImagePreprocess(**EXAMPLE_PREPROCESS[model]))
    return {k: np.concatenate([v, stack_inputs(faces)[k]]) for k, v in inputs.items()}


def build_rows(source, out: Path, minutes: float, log) -> list[Row]:
    from optimizers import Pruner, Quantizer
    from optimizers.onnx_torch.pipeline import CRITERION
    from optimizers.onnx_torch.recovery import RecoveryOptions

    rows = [Row("plain INT8 (quantize_static, per-channel U8S8)",
                plain_quantize_static(source, out / "plain-int8.onnx", True))]
    for ratio in RATIOS:
        pct = int(ratio * 100)
        for recovered in (False, True):
            name = f"prune-{pct}" + (" + recovery" if recovered else " (no recovery)")
            log(f"building {name}")
            started = time.monotonic()
            result = Pruner("structured", CRITERION).prune_onnx(source.baseline, out / f"prune-{pct}-{int(recovered)}.onnx", ratio,
                                         input_shapes=source.input_shapes,
                                         recovery_data=source.recovery if recovered else None,
                                         recovery=RecoveryOptions(minutes=minutes), check_data=source.calibration,
                                         progress=lambda line, n=name: log(f"{n}: {line}"))
            row = Row(name, result.path, time.monotonic() - started,
                      params=f"{result.params_before / 1e6:.2f}M -> {result.params_after / 1e6:.2f}M"
                             + (" (cached)" if result.cached else ""))
            rows.append(row)
            if ratio == 0.5 and recovered:
                q = Quantizer("int8").quantize(row.path, calibration_data=source.calibration,
                                               output=out / "prune-50-int8.onnx")
                rows.append(Row("prune-50 + recovery + INT8 (the brief's row)", q.path, params=row.params))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--recovery-minutes", type=float, default=None, help="default: the recovery default (8)")
    parser.add_argument("--models", default="yolov8n,ppocr-det")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the table into docs/benchmarks.md between <!-- detector-pruning:start/end -->")
    args = parser.parse_args()

    from controller.fleet.local import LocalAgent
    from controller.measure.preflight import check_model
    from controller.measure.settings import MeasureSettings
    from controller.measure.store import ResultsStore
    from controller.optimization.quality import metric_or_error
    from controller.optimization.sources import onnx_source
    from optimizers.evaluation.detections import DecodeOptions, agreement, detections
    from optimizers.onnx_torch.recovery import DEFAULT_MINUTES

    minutes = args.recovery_minutes or DEFAULT_MINUTES

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    lines = [f"Measured on {machine()}, by `python benchmarks/detector_pruning.py --rounds {args.rounds}"
             f"{' --recovery-minutes ' + str(minutes) if args.recovery_minutes else ''}`: a local farm-agent, "
             f"ONNX Runtime CPU, 1 thread; speedup = median of {args.rounds} paired loops' ratios (95 % interval); "
             f"recovery: {minutes:g} min each on 2 cores. Quality on the evaluation photos (never trained on): scikit-image's 16 and, for YOLOv8n, 40 held-out "
             "LFW faces.", ""]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            source = onnx_source(f"example:{model}")
            out = work / model
            out.mkdir()
            rows = build_rows(source, out, minutes, log)
            inputs = evaluation_inputs(source, model, work)
            reference = outputs(source.baseline, inputs)[0]
            metric = metric_or_error(METRICS[model])
            truth = sum(len(detections(r, 0.25, DecodeOptions()).score) for r in reference) \
                if model == "yolov8n" else None
            for row in rows:
                got = outputs(row.path, inputs)[0]
                if model == "yolov8n":
                    row.quality, row.strict = agreement(reference, got, DecodeOptions())
                else:
                    row.quality = metric.compute({"map": reference}, {"map": got}, None)
            settings = MeasureSettings(threads=1, warmup=5, min_iterations=20, min_seconds=args.min_seconds,
                                       input_shapes=source.input_shapes)
            agent = LocalAgent(cache_dir=work / "agent", name="bench")
            client = agent.start()
            store = ResultsStore(work / "paired.db")
            try:
                base_ref = check_model(source.baseline, source.input_shapes)
                plain_ref = check_model(rows[0].path, source.input_shapes)
                for row in rows:
                    row.ratio = paired(client, base_ref, row.path, settings, store, args.rounds).ratio()
                    if row is not rows[0]:
                        row.vs_plain = paired(client, plain_ref, row.path, settings, store, args.rounds).ratio()
                    log(f"{model}: {row.name}: {row.ratio.text()}, quality {row.quality:.3f}")
            finally:
                store.close()
                agent.stop()
            qname = "det-agreement mAP@0.5 (@0.5:0.95)" if model == "yolov8n" else "mask-iou@0.5"
            lines += [f"**{model}**" + (f" ({truth} FP32 detections with score >= 0.25 on the {len(reference)} evaluation images)"
                                        if truth is not None else ""), "",
                      f"| variant | parameters | {qname} | speedup vs FP32 (95 % CI) | vs plain INT8 (95 % CI) | "
                      "build s |", "|---|---|---:|---:|---:|---:|"]
            for r in rows:
                quality = f"{r.quality:.3f}" + (f" ({r.strict:.3f})" if r.strict is not None else "")
                lines.append(f"| {r.name} | {r.params} | {quality} | {r.ratio.text()} | "
                             f"{r.vs_plain.text() if r.vs_plain else '1.00x (itself)'} | {r.build_s:.0f} |")
            good = [r for r in rows[1:] if r.quality >= QUALITY_GOAL]
            if good:
                best = max(good, key=lambda r: r.vs_plain.median)
                p50_ratio = 1 / best.vs_plain.median
                verdict = (f"best with quality >= {QUALITY_GOAL}: {best.name}, {p50_ratio:.2f}x plain INT8's p50 "
                           f"(goal <= {SPEED_GOAL}: " + ("met" if p50_ratio <= SPEED_GOAL
                                                          else f"missed by {p50_ratio - SPEED_GOAL:.2f}") + ")")
            else:
                verdict = f"no pruned variant reaches quality {QUALITY_GOAL}: the speed goal is missed"
            gains = [f"{int(rt * 100)} %: {rec.quality - raw.quality:+.3f}" for rt, raw, rec in
                     zip(RATIOS, rows[1::2], rows[2::2]) if "no recovery" in raw.name]
            lines += ["", f"Goal ({model}): {verdict}. Recovery's gain in quality: {', '.join(gains)}.", ""]
            summary.append(verdict)
    return publish("detector-pruning", "\n".join(lines), args.write_docs)


if __name__ == "__main__":
    sys.exit(main())
