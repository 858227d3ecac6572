"""Training-time techniques on the built-in digits example, all measured in one run: accuracy on the
fixed test split, parameters, FLOPs, ONNX file size, and p50 latency by a real local farm-agent
(ONNX Runtime CPU, 1 thread; rounds alternate order, p50 is the median of the rounds' p50s).

    python benchmarks/pytorch_techniques.py [--rounds 3] [--fine-tune-epochs 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--transfer-epochs", type=int, default=6)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()

    import torch

    from controller.fleet.local import LocalAgent
    from controller.measure.api import bench
    from controller.measure.settings import MeasureSettings
    from optimizers import (
        KnowledgeDistiller,
        Pruner,
        QATTrainer,
        Quantizer,
        calculate_flops,
        convert_to_int8,
        count_params,
        digits_student,
        evaluate,
        export_onnx,
        pretrained_example,
    )
    from optimizers.pytorch.training import accuracy, train

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    model, data, _ = pretrained_example(progress=log)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def add(label: str, torch_model, onnx_path: Path | None = None) -> None:
            path = onnx_path or export_onnx(torch_model, work / f"{len(rows)}.onnx")
            acc = evaluate(path, data.test.x, labels=data.test.y).accuracy  # measured on the ONNX file
            rows.append({"label": label, "path": path, "accuracy": acc, "params": count_params(torch_model),
                         "flops": calculate_flops(torch_model), "size": path.stat().st_size})
            log(f"{label}: accuracy {acc:.4f}, {rows[-1]['params']} parameters")

        add("original (FP32)", model)
        pruned = {}
        for ratio in (0.3, 0.5):
            p = Pruner(method="structured").prune(model, pruning_ratio=ratio, criterion="l1_norm")
            Pruner().fine_tune(p, data.train, epochs=args.fine_tune_epochs, learning_rate=2e-3, progress=log)
            pruned[ratio] = p
            add(f"pruned {int(ratio * 100)} % (structured, L1, fine-tuned {args.fine_tune_epochs} epochs)", p)
        torch.manual_seed(1)
        alone = digits_student()
        train(alone, data.train, epochs=args.student_epochs, learning_rate=1e-2, progress=log)
        add(f"student alone ({args.student_epochs} epochs)", alone)
        torch.manual_seed(1)
        student = KnowledgeDistiller(model, digits_student(), temperature=4.0, alpha=0.7).train(
            data.train, epochs=args.student_epochs, learning_rate=1e-2, progress=log)
        add(f"distilled student (T=4, alpha=0.7, {args.student_epochs} epochs)", student)
        # few labels: 350 labelled digits, the other 3,150 unlabelled (the teacher's transfer set)
        few = (data.train.x[:350], data.train.y[:350])
        torch.manual_seed(1)
        alone_few = digits_student()
        train(alone_few, few, epochs=30, learning_rate=1e-2, progress=log)
        add("student alone, 350 labels (30 epochs)", alone_few)
        torch.manual_seed(1)
        distilled_few = KnowledgeDistiller(model, digits_student(), temperature=4.0, alpha=0.7).train(
            few, epochs=args.transfer_epochs, learning_rate=1e-2, unlabeled_data=data.train.x[350:], progress=log)
        add(f"distilled, 350 labels + 3,150 unlabelled ({args.transfer_epochs} epochs)", distilled_few)
        ptq = Quantizer("int8").quantize(rows[0]["path"], calibration_data=data.train.x[:512],
                                         output=work / "ptq.onnx")
        add("post-training INT8 (ORT static, no training)", model, ptq.path)
        qat = QATTrainer(model).train(data.train, epochs=1, progress=log)
        q = convert_to_int8(qat, data.train.x[:512], output=work / "qat.onnx")
        add("QAT INT8 (1 epoch)", model, q.path)
        qat_p = QATTrainer(pruned[0.5]).train(data.train, epochs=1, progress=log)
        qp = convert_to_int8(qat_p, data.train.x[:512], output=work / "pruned-qat.onnx")
        add("pruned 50 % + QAT INT8", pruned[0.5], qp.path)

        agent = LocalAgent(cache_dir=work / "agent", name="bench")
        client = agent.start()
        settings = MeasureSettings(threads=1, warmup=20, min_iterations=200, min_seconds=args.min_seconds)
        try:
            p50s: dict[str, list[float]] = {}
            for rnd in range(args.rounds):
                for r in (rows if rnd % 2 == 0 else rows[::-1]):
                    res = bench(r["path"], device=client, settings=settings, store=work / "bench.db")
                    p50s.setdefault(r["label"], []).append(res.latency_ms["p50"])
                    log(f"round {rnd + 1}: {r['label']}: p50 {res.latency_ms['p50']:.3f} ms")
        finally:
            agent.stop()
        for r in rows:
            r["p50"] = statistics.median(p50s[r["label"]])
        torch_acc = accuracy(model, data.test)
    base = rows[0]
    lines = [f"Measured on {machine()}, by `python benchmarks/pytorch_techniques.py`: accuracy of each ONNX file "
             f"on the 750-image test split (the float PyTorch model: {torch_acc:.4f}); p50 by a local farm-agent, "
             "ONNX Runtime CPU, 1 thread, median of the rounds.", "",
             "| variant | accuracy | params | FLOPs | size KB | p50 ms | speedup |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['accuracy'] * 100:.2f} % | {r['params']:,} | {r['flops'] / 1e6:.2f} M | "
                     f"{r['size'] / 1024:.0f} | {r['p50']:.3f} | {base['p50'] / r['p50']:.2f}x |")
    return publish("pytorch-techniques", "\n".join(lines), args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
