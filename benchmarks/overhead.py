"""Overhead: what `farmctl bench` costs beyond the measured iterations, and what a repeat upload sends.

For the built-in MobileNetV2 (14 MB) it times whole `farmctl bench` processes (wall clock), subtracts the
measured loop's own duration (`measured_seconds` from --json), and reports the model bytes each run sent:
  * embedded agent, first run with an empty cache (agent start + upload + job),
  * embedded agent, later runs (agent start, model already cached),
  * an agent already running (`--device 127.0.0.1:PORT`): the per-job cost alone.

    python benchmarks/overhead.py [--repeats 5] [--write-docs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import farmctl, machine, write_readme_section  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()
    flags = ["--threads", "1", "--warmup", "10", "--min-iterations", "100", "--min-seconds", "1"]

    from controller.fleet.local import LocalAgent
    from controller.measure.examples import example_model

    model = example_model()
    size = model.stat().st_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"EDGEFARM_CACHE": str(Path(tmp) / "cache")}
        store = str(Path(tmp) / "overhead.db")

        def sample(label: str, device: str, n: int) -> None:
            over, sent, detail = [], [], []
            for _ in range(n):
                res, wall = farmctl("--store", store, "bench", str(model), "--device", device, *flags, env=env)
                over.append(wall - res["measured_seconds"])
                sent.append(res["upload_bytes"])
                detail.append((res["load_ms"], res["first_inference_ms"]))
            rows.append((label, n, statistics.median(over), sent,
                         statistics.median(d[0] for d in detail), statistics.median(d[1] for d in detail)))
            print(f"{label}: overhead {statistics.median(over):.3f} s, bytes sent {sent}", flush=True)

        sample("embedded agent, empty cache (first run)", "local", 1)
        sample("embedded agent, model cached", "local", args.repeats)
        agent = LocalAgent(cache_dir=Path(tmp) / "running-agent", name="running")
        agent.start()
        try:
            address = f"127.0.0.1:{agent.port}"
            sample("running agent, first upload", address, 1)
            sample("running agent, model cached", address, args.repeats)
        finally:
            agent.stop()
    table = ("| case | runs | overhead: wall − measured loop (median) | model bytes sent | session load | "
             "first inference |\n|---|---|---|---|---|---|\n")
    for label, n, over, sent, load, first in rows:
        shown = ", ".join(str(s) for s in sorted(set(sent)))
        table += f"| {label} | {n} | {over:.2f} s | {shown} | {load:.0f} ms | {first:.1f} ms |\n"
    table += (f"\nModel: built-in MobileNetV2, {size} bytes; measured loop ≥100 iterations and ≥1 s, 10 warm-up "
              f"runs, 1 thread. Measured on {machine()}, {time.strftime('%Y-%m-%d')}, with "
              f"`python benchmarks/overhead.py --repeats {args.repeats}`.\n")
    print(table)
    if args.write_readme:
        write_readme_section("overhead", table)
    cached_sent = [s for label, _, _, sent, _, _ in rows if "cached" in label for s in sent]
    return 0 if not any(cached_sent) else 1


if __name__ == "__main__":
    sys.exit(main())
