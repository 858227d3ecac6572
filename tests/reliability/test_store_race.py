"""Issue: two processes opening a new results store at once failed 20 of 20 times ('table runs already
exists' / 'database is locked'). Now the version is read inside the migration's transaction."""

from __future__ import annotations

import multiprocessing as mp

import pytest


def _open(path: str, barrier, results) -> None:
    from controller.measure.store import ResultsStore

    barrier.wait(30)
    try:
        store = ResultsStore(path)
        results.put(("ok", store.schema_version()))
        store.close()
    except Exception as exc:   # reported to the test
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.timeout(300)
def test_two_processes_create_one_store_20_times(tmp_path):
    ctx = mp.get_context("spawn")
    outcomes = []
    for trial in range(20):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(str(tmp_path / f"store-{trial}.db"), barrier, results))
                 for _ in range(2)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
    errors = [o for o in outcomes if o[0] != "ok"]
    assert not errors, errors[:3]
    assert len({o[1] for o in outcomes}) == 1
