"""The results store: WAL, versioned, transactional; a newer schema and a file that is not a store are
clear errors."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from controller.errors import UsageError
from controller.measure import frames
from controller.measure.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CandidateRecord,
    ResultsStore,
    RunRecord,
    StoreError,
)


def test_store_is_wal_versioned_and_transactional(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    assert store.schema_version() == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    kw = dict(kind="profile", model={"name": "m", "digest": "d" * 64}, device={"name": "dev", "fingerprint": "f"},
              backend="onnxruntime", backend_version="1", settings={"threads": 1}, settings_key="k")
    with pytest.raises(sqlite3.IntegrityError):  # a bad layer row rolls back the whole run
        store.record(RunRecord(**kw, result={"latency": {"p50_ms": 1.0}}, layers=[{"name": None}]))
    assert store.runs() == []
    run_id = store.record(RunRecord(**kw, result={"latency": {"p50_ms": 1.0, "count": 3}, "flags": ["noisy"]},
                                    layers=[{"name": "conv", "op_type": "Conv", "time_ms": 0.5, "flops": 10}]))
    (run,) = store.runs(model="m")
    assert run["id"] == run_id and run["p50_ms"] == 1.0 and run["flags"] == "noisy" and run["iterations"] == 3
    assert store.layers(run_id)[0]["flops"] == 10
    assert store.runs(model="dddd") and not store.runs(device="other")
    store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer than this edgefarm"):
        ResultsStore(tmp_path / "r.db")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable results store"):
        ResultsStore(tmp_path / "junk.db")


def _run(**extra) -> RunRecord:
    kw = dict(kind="benchmark", model={"name": "m", "digest": "d" * 64, "path": "m.onnx", "size": 10},
              device={"name": "dev", "fingerprint": "f", "device_class": "x86"}, backend="onnxruntime",
              backend_version="1", settings={"threads": 1}, settings_key="k",
              result={"latency": {"min_ms": 0.9, "p50_ms": 1.0, "p90_ms": 1.2, "p95_ms": 1.3, "p99_ms": 1.5,
                                  "max_ms": 2.0, "mean_ms": 1.1, "std_ms": 0.1, "cv": 0.09, "count": 4},
                      "load_ms": 12.5, "first_inference_ms": 3.25, "peak_memory_bytes": 1024})
    return RunRecord(**{**kw, **extra})


def test_times_reference_and_every_column_in_the_dataframe(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        times, ref = np.array([1.0, 1.5, 0.75, 2.0]), np.array([2.0, 2.5, 1.75, 3.0])
        run_id = store.record(_run(times={"times_ms": times, "reference_times_ms": ref}, reference_digest="e" * 64))
        other = store.record(_run(kind="profile", layers=[
            {"name": "Conv_0_nchwc", "op_type": "Conv", "time_ms": 0.5, "source_nodes": ["conv", "relu"]}]))
        got, got_ref = store.times(run_id)
        assert got.tolist() == times.tolist() and got_ref.tolist() == ref.tolist()
        assert [a.size for a in store.times(other)] == [0, 0]     # a run the agent sent no times for
        runs = store.dataframe("runs")
        assert list(runs.columns) == list(frames.RUN_FRAME_COLUMNS)
        first = runs.set_index("id").loc[run_id]
        assert (first["min_ms"], first["p95_ms"], first["max_ms"], first["mean_ms"], first["std_ms"]) == \
            (0.9, 1.3, 2.0, 1.1, 0.1)
        assert first["load_ms"] == 12.5 and first["first_inference_ms"] == 3.25 and first["times"] == 4
        assert first["model_digest"] == "d" * 64 and first["reference_digest"] == "e" * 64
        assert str(runs["threads"].dtype) == "Int64"   # integers stay integers, with gaps
        assert list(store.dataframe("runs", kind="profile")["id"]) == [other]
        (layer,) = store.dataframe("layers", run=other).to_dict("records")
        assert layer["source_nodes"] == ["conv", "relu"] and layer["label"] == "conv +1 fused"
        assert layer["model_name"] == "m" and layer["device_name"] == "dev"
        assert store.dataframe("layers", run=[run_id]).empty and len(store.dataframe("layers")) == 1
        store.record_candidate(CandidateRecord("key", "dev", "int8", ["int8"], "ok", latency_ms={"p50": 0.5},
                                               detail={"paired": {"median": 1.9, "low": 1.8, "high": 2.0}}))
        (cand,) = store.dataframe("candidates", optimize_key="key").to_dict("records")
        assert cand["techniques"] == ["int8"] and (cand["paired_low"], cand["paired_high"]) == (1.8, 2.0)
        (record,) = store.candidates("key", "dev")
        assert record.latency_ms["p50"] == 0.5 and record.detail["paired"]["median"] == 1.9
        with pytest.raises(UsageError, match="takes the filters model, device, kind, status, limit, not run"):
            store.dataframe("runs", run=1)
        with pytest.raises(UsageError, match="no table 'jobs'"):
            store.dataframe("jobs")


def test_a_schema_3_store_is_migrated_with_its_runs(tmp_path):
    conn = sqlite3.connect(tmp_path / "old.db")
    for script in MIGRATIONS[:3]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 3")
    result = json.dumps({"latency": {"p50_ms": 1.0, "p95_ms": 1.4, "max_ms": 3.0}})
    conn.execute("INSERT INTO runs (id, created_at, kind, status, model_name, model_digest, device_name, "
                 "device_fingerprint, backend, settings_key, settings_json, p50_ms, result_json) VALUES "
                 "(1, 'then', 'profile', 'ok', 'm', 'd', 'dev', 'f', 'onnxruntime', 'k', '{}', 1.0, ?)", (result,))
    conn.execute("INSERT INTO layers (run_id, rank, name, op_type, time_ms, input_shapes, output_shapes) VALUES "
                 "(1, 0, 'Conv_0_nchwc', 'Conv', 0.5, '[]', '[]')")
    conn.commit()
    conn.close()
    with ResultsStore(tmp_path / "old.db") as store:
        assert store.schema_version() == SCHEMA_VERSION == 4
        (run,) = store.runs()
        assert (run["p95_ms"], run["max_ms"], run["reference_digest"]) == (1.4, 3.0, None)   # read from result_json
        (layer,) = store.layers(1)
        assert layer["source_nodes"] == [] and layer["label"] == "Conv_0_nchwc"
        assert [a.size for a in store.times(1)] == [0, 0]
