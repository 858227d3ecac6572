"""The ONNX techniques on a battery of real ONNX files: each either makes a model that loads and runs in
ONNX Runtime (the cell shows its fidelity against the original, output cosine on held-out inputs) or says
in one sentence why it cannot (the op or layer named). No cell may be a raw traceback: a technique that
raises anything but edgefarm's own errors makes the script fail.

Models: all-MiniLM-L6-v2 (real sentences), Silero VAD, YOLOv8n and PP-OCRv4's detector (scikit-image's
photos), the built-in MobileNetV2, and ONNX exports of six published image classifiers built from their
transformers configs with random weights (ResNet, MobileNetV2, RegNet, ConvNeXt, EfficientNet, MobileViT;
3x64x64, 10 classes; synthetic inputs).

    python benchmarks/onnx_battery.py [--models a,b] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine, publish  # noqa: E402

EXAMPLES = ("minilm", "silero-vad", "yolov8n", "ppocr-det", "mobilenetv2")
ARCHITECTURES = ("resnet", "mobilenetv2", "regnet", "convnext", "efficientnet", "mobilevit")
TECHNIQUES = ("fuse", "rewrite", "int8", "int8-dynamic", "fp16", "int4", "mixed", "profile")
RESULTS = ROOT / "benchmarks" / "results" / "onnx-battery.json"


def run_technique(technique: str, model: Path, source, work: Path) -> str:
    """One cell: 'ok, cosine 0.9987' (or 'ok, N layers' for the profile), or 'cannot: SENTENCE'."""
    from core.errors import FarmError
    from optimizers import (
        MixedPrecisionOptimizer,
        OperatorFuser,
        OperatorOptimizer,
        Profiler,
        Quantizer,
        evaluate,
    )

    out = work / f"{model.stem}.{technique}.onnx"
    makers = {
        "fuse": lambda: OperatorFuser().fuse_operations(model, output=out),
        "rewrite": lambda: OperatorOptimizer().optimize(model, output=out),
        "int8": lambda: Quantizer("int8").quantize(model, calibration_data=source.calibration, output=out),
        "int8-dynamic": lambda: Quantizer("dynamic").quantize(model, output=out),
        "fp16": lambda: Quantizer("fp16").quantize(model, output=out),
        "int4": lambda: Quantizer("int4").quantize(model, output=out),
        "mixed": lambda: MixedPrecisionOptimizer(accuracy_threshold=0.99, max_eval_samples=8).optimize(
            model, source.calibration, source.evaluation.limit(8), output=out),
    }
    try:
        if technique == "profile":
            prof = Profiler(model).profile(input_data=source.evaluation.limit(1), iterations=5, warmup=1)
            return f"ok, {len(prof.layers)} layers, {prof.total_ms:.2f} ms"
        result = makers[technique]()
        fid = evaluate(result.path, source.evaluation.limit(16), reference=model).fidelity
        return f"ok, cosine {fid.cosine:.4f}"
    except FarmError as exc:   # the technique's own sentence (OptimizerError, ModelError, ...)
        return "cannot: " + str(exc).split("\n")[0][:220]


def sources(names: list[str], work: Path, log) -> dict:
    """name -> (ONNX path, Source with calibration and evaluation data)."""
    from controller.optimization.sources import onnx_source
    from optimizers import export_onnx
    from tests.optimizers.unseen import build

    out = {}
    for name in names:
        if name in EXAMPLES:
            src = onnx_source(f"example:{name}")
        else:
            arch = name.removeprefix("hf-")
            path = export_onnx(build(arch), work / f"hf-{arch}.onnx")
            src = onnx_source(str(path))
        log(f"{name}: {src.notes[0] if src.notes else ''}")
        out[name] = (src.baseline, src)
    return out


def table(cells: dict[str, dict[str, str]]) -> str:
    lines = ["| model | " + " | ".join(TECHNIQUES) + " |", "|---|" + "---|" * len(TECHNIQUES)]
    for name, row in cells.items():
        lines.append(f"| {name} | " + " | ".join(row[t].replace("|", "/") for t in TECHNIQUES) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join([*EXAMPLES, *(f"hf-{a}" for a in ARCHITECTURES)]))
    parser.add_argument("--write-docs", "--write-readme", dest="write", action="store_true",
                        help="put the table into docs/benchmarks.md (block onnx-battery)")
    parser.add_argument("--from-results", action="store_true",
                        help=f"render the table from the last run's {RESULTS.relative_to(ROOT)} instead of running")
    args = parser.parse_args()
    if args.from_results:
        saved = json.loads(RESULTS.read_text())
        return publish("onnx-battery", _text(saved["cells"], saved["seconds"]), args.write)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    cells: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="edgefarm-battery-") as tmp:
        work = Path(tmp)
        for name, (path, source) in sources(args.models.split(","), work, log).items():
            cells[name] = {}
            for technique in TECHNIQUES:
                t0 = time.perf_counter()
                cells[name][technique] = run_technique(technique, path, source, work)
                log(f"{name} {technique}: {cells[name][technique]} ({time.perf_counter() - t0:.1f} s)")
    seconds = round(time.monotonic() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cells": cells, "seconds": seconds, "machine": machine()}, indent=1))
    return publish("onnx-battery", _text(cells, seconds), args.write)


def _text(cells: dict[str, dict[str, str]], seconds: float) -> str:
    return (f"{table(cells)}\n\nMeasured on {machine()} in {seconds:.0f} s by "
            "`python benchmarks/onnx_battery.py --write-docs`. `ok, cosine C`: the result loads and runs in ONNX "
            "Runtime, C is its worst output's cosine against the original on held-out inputs (real data for the "
            "package examples, synthetic inputs for the six exports); `cannot:` is the technique's own sentence. "
            "The six exports have random weights: a cosine of 1.0000 there (EfficientNet, MobileViT) says the "
            "technique kept the outputs, not that the model is accurate; PP-OCR's detector outputs are near zero "
            "on photos without text, which is why its INT8 cosines are low.")


if __name__ == "__main__":
    sys.exit(main())
