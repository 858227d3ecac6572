"""Several farmctl processes on one results store, SQLite and PostgreSQL alike.

Issue: two processes opening a new store at once failed 20 of 20 times ('table runs already exists' /
'database is locked'). Now the version is read inside the migration's transaction (PostgreSQL: under an
advisory lock). And a writer killed with SIGKILL in the middle of its writes leaves no partial run: each
run with its layers and times is one transaction, and every run committed before the kill is there."""

from __future__ import annotations

import multiprocessing as mp
import signal

import pytest

from controller.measure.store import ResultsStore
from tests.controller.measure import store_writer
from tests.controller.measure.test_store_contract import _writer, check_runs

pytestmark = pytest.mark.slow   # processes racing on one store, SQLite and PostgreSQL

KILL_AFTER = 15        # runs the victim has committed before it is killed


def _open(path: str, barrier, results) -> None:
    barrier.wait(30)
    try:
        store = ResultsStore(path)
        results.put(("ok", store.schema_version()))
        store.close()
    except Exception as exc:   # reported to the test
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_processes_create_one_store_at_once(tmp_path, request, kind):
    ctx = mp.get_context("spawn")
    outcomes = []
    for trial in range(20 if kind == "sqlite" else 6):
        target = str(tmp_path / f"store-{trial}.db") if kind == "sqlite" else \
            request.getfixturevalue("postgres_server").create_database(f"race_{trial}")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(target, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
    errors = [o for o in outcomes if o[0] != "ok"]
    assert not errors, errors[:3]
    assert len({o[1] for o in outcomes}) == 1


@pytest.mark.timeout(300)
def test_a_writer_killed_mid_writes_leaves_the_store_whole(store_target):
    ResultsStore(store_target).close()
    victim, survivor = _writer(store_target, 1, 0), _writer(store_target, 2, 60)   # the victim writes on and on
    for proc in (victim, survivor):
        proc.stdin.write("go\n")
        proc.stdin.flush()
    committed = {1: [], 2: []}
    for line in victim.stdout:              # each line: a run id whose transaction has committed
        committed[1].append(int(line))
        if len(committed[1]) == KILL_AFTER:
            victim.send_signal(signal.SIGKILL)
            break
    committed[1] += [int(x) for x in victim.stdout.read().split()]   # what it printed before it died
    assert victim.wait(timeout=60) == -signal.SIGKILL
    committed[2] = [int(line) for line in iter(survivor.stdout.readline, "half\n")]
    survivor.stdin.write("go\n")                  # the other writer goes on to the end
    survivor.stdin.flush()
    committed[2] += [int(x) for x in survivor.communicate(timeout=240)[0].split()]
    assert survivor.returncode == 0 and len(committed[2]) == 60
    with ResultsStore(store_target) as store:
        held = check_runs(store, committed)   # every reported run whole, no partial run
        assert len(committed[1]) + 60 <= held <= len(committed[1]) + 61   # at most one committed, unreported
        if store.dialect == "sqlite":
            assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        else:   # the killed session's locks are gone: a new write goes through
            assert not store.db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND state LIKE 'idle in transaction%'")
        run_id = store.record(store_writer.run_record(3, 0))
        assert store.layers(run_id)
