"""A PostgreSQL store outlives a dropped connection (a server restart, a network cut, an ended session): the
next read or write reconnects and runs again, nothing half-written; a write whose COMMIT went unanswered is not
run again; a server that stays down is one sentence.
The connection is dropped for real, by the server ending the store's session (pg_terminate_backend)."""

from __future__ import annotations

import psycopg
import pytest

from controller.measure import store_sql
from controller.measure.store import CandidateRecord, ResultsStore, StoreError
from tests import postgres
from tests.controller.measure.test_store_contract import _run


def _drop_session(url: str, store: ResultsStore) -> None:
    pid = store.conn.info.backend_pid
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
    assert store.conn.info.backend_pid == pid      # the store has not noticed yet


def test_a_write_after_the_server_dropped_the_connection_reconnects_and_is_stored_once(postgres_url):
    with ResultsStore(postgres_url) as store:
        first = store.record(_run())
        _drop_session(postgres_url, store)
        second = store.record(_run(model={"name": "after", "digest": "e" * 64},
                                   layers=[{"name": "conv"}, {"name": "relu"}]))
        assert sorted(r["id"] for r in store.runs()) == sorted([first, second])
        assert [r["name"] for r in store.layers(second)] == ["conv", "relu"]

        _drop_session(postgres_url, store)          # an upsert (a candidate) and a read, each after a drop
        store.record_candidate(CandidateRecord("key", "dev", "int8", ["int8"], "ok"))
        _drop_session(postgres_url, store)
        assert [c.name for c in store.candidates("key")] == ["int8"]


def test_a_server_that_stays_down_is_one_clear_sentence(monkeypatch):
    reason = postgres.missing()
    if reason:
        (pytest.fail if postgres.required() else pytest.skip)(reason)
    monkeypatch.setattr(store_sql, "RECONNECT_S", 1.0)
    with postgres.PostgresServer() as server:
        url = server.create_database()
        store = ResultsStore(url)
        store.record(_run())
        server.stop()                               # ends every session and stays down
        with pytest.raises(StoreError) as err:
            store.record(_run())
    message = str(err.value)
    assert "lost the connection to the results store" in message and "within 1 s" in message
    assert "check that the server runs" in message and "\n" not in message


def test_a_connection_lost_at_the_commit_is_not_written_again(postgres_url, monkeypatch):
    """Whether a COMMIT whose answer never came was stored cannot be known: the write is not run again
    (it could be listed twice); the sentence says so and the store stays usable."""
    with ResultsStore(postgres_url) as store:
        store.record(_run())
        insert = store._insert_run

        def insert_then_drop(row, layers, run):
            run_id = insert(row, layers, run)
            _drop_session(postgres_url, store)      # the session ends before the COMMIT reaches it
            return run_id

        monkeypatch.setattr(store, "_insert_run", insert_then_drop)
        with pytest.raises(StoreError, match="while it committed a write, which may or may not be stored"):
            store.record(_run(model={"name": "lost", "digest": "f" * 64}))
        assert store.count_runs() == 1 and store.runs(model="lost") == []   # a read reconnects
