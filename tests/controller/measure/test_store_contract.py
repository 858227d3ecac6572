"""The contract every results store keeps, run against a SQLite file and a PostgreSQL database (the
`store_target` fixture: a throwaway server, tests/postgres.py): migrations from an empty database and from
schema 3, runs with their layers and per-inference times, candidates and the optimize resume lookup,
latency tables, DataFrames (the same on both), and two writer processes at once losing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.cli.main import main
from controller.measure import frames
from controller.measure.api import default_store_path
from controller.measure.store import SCHEMA_VERSION, CandidateRecord, ResultsStore, RunRecord, StoreError
from controller.measure.store_sql import PostgresDB, SQLiteDB, location, migrate
from tests.controller.measure import store_writer

ROOT = Path(__file__).resolve().parents[3]
TABLES = {"runs", "layers", "candidates", "latency_lut", "run_times"}


def _run(**extra) -> RunRecord:
    kw = dict(kind="benchmark", model={"name": "m", "digest": "d" * 64, "path": "m.onnx", "size": 10},
              device={"name": "dev", "fingerprint": "f", "device_class": "x86"}, backend="onnxruntime",
              backend_version="1", settings={"threads": 1}, settings_key="k",
              result={"latency": {"min_ms": 0.9, "p50_ms": 1.0, "p90_ms": 1.2, "p95_ms": 1.3, "p99_ms": 1.5,
                                  "max_ms": 2.0, "mean_ms": 1.1, "std_ms": 0.1, "cv": 0.09, "count": 4},
                      "load_ms": 12.5, "first_inference_ms": 3.25, "peak_memory_bytes": 5 * 2**30,
                      "flags": ["noisy"]})
    return RunRecord(**{**kw, **extra})


def _tables(store: ResultsStore) -> set[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'table'" if store.dialect == "sqlite" else
           "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()")
    return {r["name"] for r in store.db.query(sql)}


def _raw(target) -> SQLiteDB | PostgresDB:
    where = location(target)
    return PostgresDB(where) if isinstance(where, str) else SQLiteDB(where)


def test_a_new_store_is_migrated_and_reopened(store_target):
    with ResultsStore(store_target) as store:
        assert store.schema_version() == SCHEMA_VERSION and TABLES <= _tables(store)
        assert store.runs() == [] and store.count_runs() == 0
        run_id = store.record(_run())
    with ResultsStore(store_target) as again:    # a second open migrates nothing and keeps the rows
        assert again.schema_version() == SCHEMA_VERSION and [r["id"] for r in again.runs()] == [run_id]


def test_runs_are_recorded_filtered_and_a_bad_one_rolls_back(store_target):
    with ResultsStore(store_target) as store:
        first = store.record(_run())
        prof = store.record(_run(kind="profile", model={"name": "net", "digest": "abc" + "0" * 61},
                                 device={"name": "pi"}, layers=[{"name": "conv"}]))
        failed = store.record(_run(result=None, error_code="OUT_OF_MEMORY", error="killed"))
        with pytest.raises(Exception, match="(?i)null"):   # a layer without a name: the whole run rolls back
            store.record(_run(kind="profile", layers=[{"name": "ok"}, {"name": None}]))
        assert [r["id"] for r in store.runs()] == [failed, prof, first]            # newest first
        assert [r["id"] for r in store.runs(model="net")] == [prof] == [r["id"] for r in store.runs(model="abc")]
        assert [r["id"] for r in store.runs(device="pi")] == [prof]
        assert [r["id"] for r in store.runs(kind="benchmark", status="ok")] == [first]
        assert [r["id"] for r in store.runs(limit=2)] == [failed, prof] and store.runs(model="zzz") == []
        assert (store.count_runs(), store.count_runs(status="failed"), store.count_runs(model="abc")) == (3, 1, 1)
        run = store.run(first)
        assert (run["p50_ms"], run["p95_ms"], run["iterations"], run["flags"]) == (1.0, 1.3, 4, "noisy")
        assert run["peak_memory_bytes"] == 5 * 2**30 and '"p99_ms": 1.5' in run["result_json"]
        assert store.run(failed)["status"] == "failed" and store.run(failed)["error_code"] == "OUT_OF_MEMORY"
        assert store.run(10**9) is None and store.layers(failed) == []


def test_layers_and_per_inference_times(store_target):
    times = np.random.default_rng(0).gamma(4.0, 0.5, 100_000).astype(np.float32)
    with ResultsStore(store_target) as store:
        run_id = store.record(_run(kind="profile", times={"times_ms": times, "reference_times_ms": times * 2},
                                   layers=[{"name": "Conv_0_nchwc", "op_type": "Conv", "time_ms": 0.5,
                                            "flops": 6 * 10**9, "memory_bytes": 3 * 2**31,
                                            "input_shapes": [[1, 3, 224, 224]], "source_nodes": ["conv", "relu"]},
                                           {"name": "fc", "op_type": "Gemm", "time_ms": 0.25}]))
        bare = store.record(_run())
        got, ref = store.times(run_id)
        assert got.dtype == np.float32 and np.array_equal(got, times) and np.array_equal(ref, times * 2)
        assert [a.size for a in store.times(bare)] == [0, 0]
        conv, fc = store.layers(run_id)
        assert (conv["rank"], conv["flops"], conv["memory_bytes"]) == (0, 6 * 10**9, 3 * 2**31)   # 64-bit
        assert conv["input_shapes"] == [[1, 3, 224, 224]] and conv["label"] == "conv +1 fused"
        assert (fc["rank"], fc["source_nodes"], fc["time_ms"]) == (1, [], 0.25)


def test_candidates_and_the_optimize_resume_lookup(store_target):
    with ResultsStore(store_target) as store:
        run_id = store.record(_run())
        for name in ("baseline", "int8", "fp16"):
            store.record_candidate(CandidateRecord("key", "pi", name, [name], "ok", latency_ms={"p50": 1.0,
                                                   "p90": 1.1, "p99": 1.2}, cv=0.01, run_id=run_id))
        store.record_candidate(CandidateRecord("key", "jetson", "int8", ["int8"], "failed", reason="no INT8"))
        store.record_candidate(CandidateRecord("other", "pi", "int8", ["int8"], "ok"))
        # optimize writes the baseline again with its decision: the one row is replaced, and moves last
        store.record_candidate(CandidateRecord("key", "pi", "baseline", [], "ok", latency_ms={"p50": 2.0},
                                               flags=["noisy", "throttled"], accuracy=0.9, fidelity=0.99,
                                               detail={"decision": {"chosen": "int8"}}))
        assert [c.name for c in store.candidates("key", "pi")] == ["int8", "fp16", "baseline"]
        assert [(c.device_name, c.name) for c in store.candidates("key")] == \
            [("pi", "int8"), ("pi", "fp16"), ("jetson", "int8"), ("pi", "baseline")]
        resumed = {c.name: c for c in store.candidates("key", "pi")}    # what a rerun of optimize reads
        assert resumed["int8"].latency_ms == {"p50": 1.0, "p90": 1.1, "p99": 1.2} and resumed["int8"].run_id == run_id
        base = resumed["baseline"]
        assert (base.latency_ms["p50"], base.flags, base.accuracy, base.fidelity, base.techniques) == \
            (2.0, ["noisy", "throttled"], 0.9, 0.99, [])
        assert base.detail == {"decision": {"chosen": "int8"}} and base.run_id is None
        (failed,) = store.candidates("key", "jetson")
        assert (failed.status, failed.reason, failed.latency_ms) == ("failed", "no INT8", None)
        assert store.candidates("missing") == []


def test_latency_tables(store_target):
    key = dict(device_fingerprint="f", backend="onnxruntime", backend_version="1", settings_key="k")
    with ResultsStore(store_target) as store:
        store.lut_put(**key, block_key="b1", p50_ms=1.5, device_name="pi")
        store.lut_put(**key, block_key="b1", p50_ms=1.25)      # measured again: replaced
        store.lut_put(**key, block_key="overhead", p50_ms=0.5)
        assert store.lut_get(**key) == {"b1": 1.25, "overhead": 0.5}
        assert store.lut_get(**{**key, "backend_version": "2"}) == {}


def _fill(store: ResultsStore) -> None:
    a = store.record(_run(times={"times_ms": np.array([1.0, 1.5, 0.75, 2.0])}, reference_digest="e" * 64))
    store.record(_run(kind="profile", layers=[{"name": "Conv_0", "op_type": "Conv", "time_ms": 0.5, "flops": 10,
                                                "source_nodes": ["conv"]}, {"name": "fc", "time_ms": 0.1}]))
    store.record(_run(result=None, error_code="TIMEOUT", error="slow"))
    store.record_candidate(CandidateRecord("key", "dev", "int8", ["int8"], "ok", latency_ms={"p50": 0.5}, run_id=a,
                                           detail={"paired": {"median": 1.9, "low": 1.8, "high": 2.0}}))


def _frames(store: ResultsStore) -> list:
    return [store.dataframe("runs").drop(columns="created_at"), store.dataframe("layers"),
            store.dataframe("candidates").drop(columns="created_at")]


def test_dataframes_have_every_column(store_target):
    with ResultsStore(store_target) as store:
        _fill(store)
        runs, layers, cands = (store.dataframe(t) for t in ("runs", "layers", "candidates"))
        assert list(runs.columns) == list(frames.RUN_FRAME_COLUMNS)
        assert list(layers.columns) == list(frames.LAYER_FRAME_COLUMNS)
        assert list(cands.columns) == list(frames.CANDIDATE_FRAME_COLUMNS)
        first = runs.set_index("id").loc[1]
        assert (first["times"], first["p95_ms"], first["load_ms"], first["reference_digest"]) == (4, 1.3, 12.5, "e" * 64)
        assert str(runs["threads"].dtype) == "Int64" and list(store.dataframe("runs", kind="profile")["id"]) == [2]
        assert list(layers["label"]) == ["conv", "fc"] and list(layers["model_name"]) == ["m", "m"]
        assert store.dataframe("layers", run=[]).empty and len(store.dataframe("layers", run=2)) == 2
        (cand,) = frames.records(cands)
        assert cand["techniques"] == ["int8"] and (cand["paired_low"], cand["paired_high"]) == (1.8, 2.0)


def test_sqlite_and_postgresql_give_the_same_frames(tmp_path, postgres_url):
    stores = [ResultsStore(tmp_path / "r.db"), ResultsStore(postgres_url)]
    try:
        for store in stores:
            _fill(store)
        for lite, pg in zip(*(_frames(s) for s in stores)):
            assert lite.dtypes.to_dict() == pg.dtypes.to_dict()
            assert frames.records(lite) == frames.records(pg)
    finally:
        for store in stores:
            store.close()


def test_a_schema_3_store_is_migrated_with_its_rows(store_target):
    db = _raw(store_target)
    migrate(db, target=3)
    with db.transaction():
        db.execute("INSERT INTO runs (id, created_at, kind, status, model_name, model_digest, device_name, "
                   "device_fingerprint, backend, settings_key, settings_json, p50_ms, result_json) VALUES "
                   "(1, 'then', 'profile', 'ok', 'm', 'd', 'dev', 'f', 'onnxruntime', 'k', '{}', 1.0, ?)",
                   ('{"latency": {"p50_ms": 1.0, "p95_ms": 1.4, "max_ms": 3.0}}',))
        db.execute("INSERT INTO layers (run_id, rank, name, op_type, time_ms, input_shapes, output_shapes) "
                   "VALUES (1, 0, 'Conv_0_nchwc', 'Conv', 0.5, '[]', '[]')")
        for name in ("b", "a"):
            db.execute("INSERT INTO candidates (optimize_key, device_name, name, created_at, techniques, status) "
                       "VALUES ('key', 'dev', ?, 'then', '[]', 'ok')", (name,))
    assert db.version() == 3
    db.close()
    with ResultsStore(store_target) as store:
        assert store.schema_version() == SCHEMA_VERSION
        (run,) = store.runs()
        assert (run["p95_ms"], run["max_ms"], run["reference_digest"]) == (1.4, 3.0, None)   # from result_json
        (layer,) = store.layers(1)
        assert layer["source_nodes"] == [] and layer["label"] == "Conv_0_nchwc"
        assert [a.size for a in store.times(1)] == [0, 0]
        assert [c.name for c in store.candidates("key")] == ["b", "a"]    # written before schema 5: in order
        store.record_candidate(CandidateRecord("key", "dev", "c", [], "ok"))
        assert [c.name for c in store.candidates("key")][-1] == "c"


def test_a_newer_schema_is_refused(store_target):
    ResultsStore(store_target).close()
    db = _raw(store_target)
    with db.transaction():
        db.set_version(SCHEMA_VERSION + 1)
    db.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this edgefarm"):
        ResultsStore(store_target)


def _writer(target, writer: int, count: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.controller.measure.store_writer", str(target),
                             str(writer), str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline() == "ready\n"    # its store is open (and migrated)
    return proc


def check_runs(store: ResultsStore, committed: dict[int, list[int]]) -> int:
    """Every run a writer reported committed is there, whole; no run in the store is partial. Returns how
    many runs the store holds."""
    stored = {r["id"]: r for r in store.runs()}
    for writer, ids in committed.items():
        for i, run_id in enumerate(ids):
            assert stored[run_id]["model_name"] == f"writer{writer}-{i}", (writer, i, run_id)
            times, ref = store.times(run_id)
            want, want_ref = store_writer.expected_times(writer, i)
            assert np.array_equal(times, want) and np.array_equal(ref, want_ref)
    layers = store.dataframe("layers").groupby("run_id")["rank"].agg(["count", "max"])
    counts = store.dataframe("runs")["times"]
    assert len(layers) == len(stored) and set(layers["count"]) == {store_writer.LAYERS}   # no partial run
    assert set(layers["max"]) == {store_writer.LAYERS - 1} and set(counts) == {store_writer.TIMES}
    return len(stored)


def test_two_processes_write_at_once(store_target):
    ResultsStore(store_target).close()
    writers = [_writer(store_target, w, 40) for w in (1, 2)]
    committed = {1: [], 2: []}
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for w, proc in zip(committed, writers):   # both have written half their runs: both go on together
        committed[w] += [int(line) for line in iter(proc.stdout.readline, "half\n")]
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for w, proc in zip(committed, writers):
        committed[w] += [int(x) for x in proc.communicate(timeout=300)[0].split()]
    assert [proc.returncode for proc in writers] == [0, 0]
    assert [len(ids) for ids in committed.values()] == [40, 40]
    with ResultsStore(store_target) as store:
        assert check_runs(store, committed) == 80
        assert len(store.candidates("concurrent")) == 80


def test_the_store_flag_and_environment_take_a_postgresql_url(postgres_url, monkeypatch, capsys):
    with ResultsStore(postgres_url) as store:
        run_id = store.record(_run(model={"name": "on-the-server", "digest": "d" * 64}))
    assert main(["--store", postgres_url, "show", str(run_id)]) == 0
    assert "on-the-server" in capsys.readouterr().out
    monkeypatch.setenv("EDGEFARM_STORE", postgres_url)
    assert default_store_path() == postgres_url
    assert main(["report", "--format", "csv"]) == 0 and "on-the-server" in capsys.readouterr().out
    monkeypatch.setenv("EDGEFARM_STORE", "team/results.db")
    assert default_store_path() == Path("team/results.db")


def test_an_unusable_server_or_url_is_one_sentence(postgres_server, capsys):
    with pytest.raises(StoreError, match=r"cannot open the results store postgresql://u:\*\*\*@127.0.0.1:1/x"):
        ResultsStore("postgresql://u:secret@127.0.0.1:1/x")     # nothing listens on port 1; no password shown
    with pytest.raises(StoreError, match="does not exist"):
        ResultsStore(postgres_server.url("no_such_database"))
    assert main(["--store", "mysql://host/db", "report"]) == 1
    assert "mysql:// is not a store edgefarm can use" in capsys.readouterr().err


def test_a_team_member_s_role_needs_no_create(postgres_url):
    """docs/store.md: the owner's first open creates the tables; a role with SELECT, INSERT, UPDATE and the
    sequences' USAGE writes from then on, a SELECT-only role (the dashboard's) reads and cannot write."""
    import psycopg

    ResultsStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE alice LOGIN; CREATE ROLE viewer LOGIN; "
                     "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO alice; "
                     "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO alice; "
                     "GRANT SELECT ON ALL TABLES IN SCHEMA public TO viewer")
    try:
        with ResultsStore(postgres_url.replace("postgres@", "alice@")) as store:
            run_id = store.record(_run(times={"times_ms": np.ones(3)}))
            store.record_candidate(CandidateRecord("key", "dev", "int8", ["int8"], "ok"))
            store.record_candidate(CandidateRecord("key", "dev", "int8", ["int8"], "ok", reason="again"))
        with ResultsStore(postgres_url.replace("postgres@", "viewer@")) as store:
            assert store.run(run_id)["model_name"] == "m" and store.candidates("key")[0].reason == "again"
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                store.record(_run())
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY alice, viewer; DROP ROLE alice; DROP ROLE viewer")
