"""The results store: WAL, versioned, transactional; a newer schema and a file that is not a store are
clear errors."""

from __future__ import annotations

import sqlite3

import pytest

from controller.measure.store import SCHEMA_VERSION, ResultsStore, RunRecord, StoreError


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
