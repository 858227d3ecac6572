"""The results store on SQLite and on PostgreSQL (a throwaway server on this machine, PostgreSQL's default
durability: fsync on, synchronous commit; SQLite in WAL with synchronous=FULL, Python's default):

1. write throughput: W writer processes at once (1, then 4), each recording profile runs of 50 layers and
   200 paired per-inference times (one transaction per run), runs per second over the wall time from the
   go signal to the last writer's end; the median of a few rounds taken in turn on both stores;
2. the dashboard with 10,000 stored runs: a real `farmctl dashboard` (uvicorn) on each store, the wall time
   of an HTTP GET of each page's HTML (median of N after one warm-up load), from this machine's loopback.

    python benchmarks/store.py [--rounds 3] [--runs-per-writer 50] [--stored-runs 10000] [--loads 10] [--write-docs]

The PostgreSQL binaries come from Debian's postgresql package (tests/postgres.py finds them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, publish  # noqa: E402

PAGES = [("runs list (newest 200 of all)", "/runs"), ("runs list, one device", "/runs?device=dev2"),
         ("one profile run (50 layers)", "/runs/{profile}"), ("optimize runs", "/optimize"),
         ("runs API (JSON)", "/api/runs")]


def writer(target: str, writer_id: int, count: int) -> int:
    """A writer process: open the store, say ready, wait for the go line, record `count` runs."""
    from controller.measure.store import ResultsStore
    from tests.controller.measure.store_writer import run_record

    records = [run_record(writer_id, i) for i in range(count)]
    with ResultsStore(target) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        for rec in records:
            store.record(rec)
    print("done", flush=True)
    return 0


def throughput(target: str, writers: int, count: int) -> float:
    """Runs per second of `writers` writer processes recording `count` runs each into the store at once."""
    procs = [subprocess.Popen([sys.executable, __file__, "--writer", target, str(w + 1), str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for w in range(writers)]
    for p in procs:
        if p.stdout.readline() != "ready\n":
            raise SystemExit("a writer did not start")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        if p.stdout.readline() != "done\n" or p.wait(60) != 0:
            raise SystemExit("a writer failed")
    return writers * count / (time.perf_counter() - t0)


def fill(target: str, n: int) -> int:
    """n runs like a team's store: 4 devices, 25 models, one in ten a profile of 50 layers, every run with 200
    times; 5 optimize runs of 8 candidates. Written through ResultsStore.record with commits that do not wait
    for the disk (the fill is not what is measured). Returns a profile run's id."""
    from controller.measure.store import CandidateRecord, ResultsStore
    from tests.controller.measure.store_writer import run_record

    with ResultsStore(target) as store:
        store.conn.execute("PRAGMA synchronous=OFF" if store.dialect == "sqlite" else "SET synchronous_commit = off")
        profile = 0
        for i in range(n):
            rec = run_record(i % 4, i)
            rec.model = {**rec.model, "name": f"model{i % 25}"}
            if i % 10:
                rec.kind, rec.layers = "benchmark", []
            run_id = store.record(rec)
            profile = run_id if rec.kind == "profile" else profile
        for k in range(5):
            for c in range(8):
                store.record_candidate(CandidateRecord(f"opt{k}", "dev1", "baseline" if c == 0 else f"cand{c}",
                                                       ["int8"], "ok", latency_ms={"p50": 1.0 + c, "p90": 1.1 + c,
                                                                                   "p99": 1.2 + c},
                                                       size_bytes=10**6, fidelity=0.99, run_id=profile))
    return profile


def page_loads(target: str, profile: int, loads: int, work: Path) -> dict[str, list[float]]:
    """Start `farmctl dashboard` on the store; the seconds of each page's loads after one warm-up."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGEFARM_STORE", None)
    proc = subprocess.Popen([sys.executable, "-m", "controller", "--store", target, "dashboard", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work, env=env)
    try:
        line = proc.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"the dashboard did not start: {line} {proc.stderr.read()[-2000:]}")
        base = line.split()[1].rstrip("/")
        out = {}
        for name, path in PAGES:
            url = base + path.format(profile=profile)
            times = []
            for i in range(loads + 1):
                t0 = time.perf_counter()
                with urllib.request.urlopen(url, timeout=120) as reply:
                    if reply.status != 200:
                        raise SystemExit(f"{url}: HTTP {reply.status}")
                    reply.read()
                if i:
                    times.append(time.perf_counter() - t0)
            out[name] = times
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def store_size(target: str) -> int:
    from controller.measure.store import ResultsStore

    if not target.startswith("postgresql://"):
        return sum(p.stat().st_size for p in Path(target).parent.glob(Path(target).name + "*"))
    with ResultsStore(target) as store:
        return store.db.query("SELECT pg_database_size(current_database()) AS n")[0]["n"]


def measure(args) -> tuple[dict, dict, dict, float]:
    from tests.postgres import PostgresServer, missing

    if missing():
        raise SystemExit(missing())
    rates, pages, sizes = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp, PostgresServer(durable=True) as server:
        work = Path(tmp)
        targets = {(k, w): str(work / f"w{w}.db") if k == "SQLite" else server.create_database(f"w{w}")
                   for k in ("SQLite", "PostgreSQL") for w in (1, 4)}
        for rnd in range(args.rounds):      # rounds in turn on both stores: the machine's noise hits both
            for (kind, w), target in targets.items():
                rates.setdefault((kind, w), []).append(throughput(target, w, args.runs_per_writer))
                print(f"round {rnd + 1}: {kind}: {w} writer(s): {rates[kind, w][-1]:.1f} runs/s", file=sys.stderr,
                      flush=True)
        rates = {key: statistics.median(values) for key, values in rates.items()}
        fill_s = time.perf_counter()
        for kind in ("SQLite", "PostgreSQL"):
            target = str(work / "team.db") if kind == "SQLite" else server.create_database("team")
            profile = fill(target, args.stored_runs)
            sizes[kind] = store_size(target)
            pages[kind] = page_loads(target, profile, args.loads, work)
            print(f"{kind}: filled and loaded pages ({time.perf_counter() - fill_s:.0f} s)", file=sys.stderr,
                  flush=True)
    return rates, pages, sizes, time.perf_counter() - fill_s


def table(args, rates: dict, pages: dict, sizes: dict) -> str:
    from controller.measure.frames import cell

    lines = ["Write throughput: writer processes recording at once into one store, each run one transaction with "
             f"50 layers and 200 paired times ({args.runs_per_writer} runs per writer; median of {args.rounds} "
             "rounds):", "",
             "| store | 1 writer | 4 writers |", "|---|---:|---:|"]
    for kind in ("SQLite", "PostgreSQL"):
        lines.append(f"| {kind} | {rates[kind, 1]:.0f} runs/s | {rates[kind, 4]:.0f} runs/s |")
    lines += ["", f"Dashboard with {args.stored_runs:,} stored runs (one in ten a 50-layer profile, every run with "
              f"200 times; SQLite file {sizes['SQLite'] / 2**20:.0f} MiB, PostgreSQL database "
              f"{sizes['PostgreSQL'] / 2**20:.0f} MiB): HTTP GET of the page's HTML from a real `farmctl dashboard` "
              f"(uvicorn) on loopback, median (max) of {args.loads} loads after one warm-up:", "",
              "| page | SQLite | PostgreSQL |", "|---|---:|---:|"]
    for name, _ in PAGES:
        lines.append(f"| {name} | " + " | ".join(
            f"{cell(statistics.median(pages[k][name]) * 1000, 1)} ms ({max(pages[k][name]) * 1000:.0f})"
            for k in ("SQLite", "PostgreSQL")) + " |")
    flags = f"--rounds {args.rounds} --runs-per-writer {args.runs_per_writer} --stored-runs {args.stored_runs} --loads {args.loads}"
    load = os.getloadavg()[0]
    lines += ["", f"Measured on {machine()} (load average {load:.1f} at the end: the machine was shared), "
              f"{time.strftime('%Y-%m-%d')}, with `python benchmarks/store.py {flags}`."]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer":
        return writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-per-writer", type=int, default=50, help="runs each writer records (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, the median reported (default 3)")
    parser.add_argument("--stored-runs", type=int, default=10_000, help="runs in the dashboard's store")
    parser.add_argument("--loads", type=int, default=10, help="timed loads of each page")
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- store:start/end --> markers")
    args = parser.parse_args()
    t0 = time.perf_counter()
    rates, pages, sizes, _ = measure(args)
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return publish("store", table(args, rates, pages, sizes), args.write_readme)


if __name__ == "__main__":
    raise SystemExit(main())
