"""A writer process for the store's concurrency tests: opens the store, prints `ready`, waits for a line on
stdin, then records runs (50 layers and 200 paired times each, one candidate per run) and prints each
committed run id on its own line as soon as its transaction is committed. Halfway through COUNT runs it
prints `half` and waits for another line: the test lets two writers go on together from there, so both
are writing in the same period however the processes are scheduled.

    python -m tests.controller.measure.store_writer STORE WRITER COUNT     (COUNT 0: until killed)
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

from controller.measure.store import CandidateRecord, ResultsStore, RunRecord

LAYERS = 50
TIMES = 200


def expected_times(writer: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """The times writer `writer` stores with its i-th run (float32-exact)."""
    base = np.arange(TIMES, dtype=np.float32) * np.float32(0.01)
    return base + np.float32(writer + i / 1024), base + np.float32(2 * writer + 1)


def run_record(writer: int, i: int) -> RunRecord:
    times, ref = expected_times(writer, i)
    layers = [{"name": f"layer{k}", "op_type": "Conv", "time_ms": 0.01 * (LAYERS - k), "percent": 2.0,
               "flops": 10**9 + k, "memory_bytes": 4096, "input_shapes": [[1, 3, 8, 8]], "output_shapes": [[1, 8]],
               "source_nodes": [f"node{k}"]} for k in range(LAYERS)]
    return RunRecord(kind="profile", model={"name": f"writer{writer}-{i}", "digest": f"{writer:02x}" * 32,
                                            "path": "m.onnx", "size": 1234},
                     device={"name": f"dev{writer}", "fingerprint": "f", "device_class": "x86"},
                     backend="onnxruntime", backend_version="1", settings={"threads": 1}, settings_key="k",
                     result={"latency": {"p50_ms": float(np.median(times)), "count": TIMES}, "threads": 1},
                     layers=layers, times={"times_ms": times, "reference_times_ms": ref}, reference_digest="e" * 64)


def main(argv: list[str]) -> int:
    target, writer, count = argv[0], int(argv[1]), int(argv[2])
    store = ResultsStore(target)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in (range(count) if count else itertools.count()):
        if count and i == count // 2:
            print("half", flush=True)
            sys.stdin.readline()
        run_id = store.record(run_record(writer, i))
        store.record_candidate(CandidateRecord("concurrent", f"dev{writer}", f"cand{i}", ["int8"], "ok",
                                               latency_ms={"p50": 1.0}, run_id=run_id))
        print(run_id, flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
