"""Structured pruning (30 %, L1) on every `transformers` image-classification architecture that builds offline
from a small config (tests/optimizers/vision_zoo.py): the time each takes to be pruned or refused, what was
removed, and how many layers were kept whole. Each architecture runs in its own process with a 120 s hang
guard, so one that hangs is reported, not waited on.

    python benchmarks/prune_architectures.py [--only NAME ...] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, machine, publish  # noqa: E402
from tests.optimizers.vision_zoo import ARCHITECTURES  # noqa: E402

HANG_S = 120
ONE = """
import json, sys, time, torch
from optimizers import Pruner
from optimizers.errors import OptimizerError
from tests.optimizers.vision_zoo import build
torch.set_num_threads(1)
model = build(sys.argv[1])
t0 = time.perf_counter()
pruner = Pruner("structured")
try:
    pruner.prune(model, pruning_ratio=0.3)
    r = pruner.report
    out = {"outcome": "pruned", "kept": r.params_ratio, "kept_whole": len(r.kept_whole),
           "unconverged": sum("did not converge" in w for w in r.kept_whole.values())}
except OptimizerError as exc:
    out = {"outcome": "refused", "reason": str(exc)[:160]}
out["seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def run(name: str) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", ONE, name], capture_output=True, text=True, timeout=HANG_S,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"outcome": f"no answer in {HANG_S} s", "seconds": time.perf_counter() - t0}
    if proc.returncode != 0:
        return {"outcome": "crashed", "reason": proc.stderr.strip().splitlines()[-1][:160],
                "seconds": time.perf_counter() - t0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: dict[str, dict]) -> str:
    lines = [f"Structured pruning, 30 % of the parameters, L1 criterion, one thread, on {machine()}; "
             "`python benchmarks/prune_architectures.py --write-docs`.", "",
             "| architecture | outcome | seconds | parameters left | layers kept whole (of them: search did not converge) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        if r["outcome"] == "pruned":
            lines.append(f"| {name} | pruned | {r['seconds']:.1f} | {r['kept']:.2f} | {r['kept_whole']} "
                         f"({r['unconverged']}) |")
        else:
            lines.append(f"| {name} | {r['outcome']}: {r.get('reason', '')} | {r['seconds']:.1f} | | |")
    slowest = max(rows.values(), key=lambda r: r["seconds"])
    lines += ["", f"Slowest: {slowest['seconds']:.1f} s."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    rows = {}
    for name in args.only or ARCHITECTURES:
        rows[name] = run(name)
        print(name, rows[name], file=sys.stderr, flush=True)
    return publish("prune-architectures", table(rows), args.write_docs)


if __name__ == "__main__":
    sys.exit(main())
