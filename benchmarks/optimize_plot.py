"""Draw `farmctl optimize`'s latency vs quality plot again from a stored summary.json, with the current
plotting code: docs/images/optimize-plot-after.png is made this way from the `make demo` run kept in
benchmarks/results/demo-optimize-summary.json (17 points, one 20 ms outlier; its constraint: the
default accuracy drop of 1 point); docs/images/optimize-plot-before.png is that run's own plot, drawn by
the code before.

    python benchmarks/optimize_plot.py [--summary FILE] [--out PNG] [--max-accuracy-drop 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.optimization.constraints import Constraints  # noqa: E402
from controller.optimization.plot import plot_png  # noqa: E402
from controller.optimization.rows import CandidateRow  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, default=ROOT / "benchmarks/results/demo-optimize-summary.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/optimize-plot-after.png")
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0)
    parser.add_argument("--min-fidelity", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--date", default="2026-11-30")
    args = parser.parse_args()
    doc = json.loads(args.summary.read_text())
    devices = [SimpleNamespace(device=d["device"], baseline=CandidateRow(**d["baseline"]),
                               candidates=[CandidateRow(**c) for c in d["candidates"]],
                               chosen=d["chosen"]) for d in doc.get("devices", [doc])]
    result = SimpleNamespace(model=doc["model"], metric=doc.get("metric"), devices=devices, threads=args.threads,
                             created=args.date, constraints=Constraints(max_accuracy_drop=args.max_accuracy_drop,
                                                                         min_fidelity=args.min_fidelity))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(plot_png(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
