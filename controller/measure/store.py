"""Results store: every measured number, written in a transaction as it arrives, in a SQLite file (WAL, the
embedded default) or a PostgreSQL database a team shares (docs/store.md)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.measure import frames
from controller.measure.store_schema import MIGRATIONS, SCHEMA_VERSION
from controller.measure.store_sql import StoreError, is_url, location, masked, open_database

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "CandidateRecord", "ResultsStore", "RunRecord", "StoreError", "is_url",
           "location", "opened"]

@dataclass
class RunRecord:
    """One bench or profile job as the store keeps it (`runs` table, and `layers` for a profile)."""

    kind: str                 # benchmark | profile
    model: dict               # name, path, digest, size
    device: dict              # the agent's GetInfo, as a dict
    backend: str
    backend_version: str
    settings: dict
    settings_key: str
    result: dict | None = None
    layers: Iterable[dict] = ()
    error_code: str | None = None
    error: str | None = None
    # per-inference ms in order: {"times_ms": ..., "reference_times_ms": ...} (Result's, when it sent them)
    times: dict[str, np.ndarray] = field(default_factory=dict)
    reference_digest: str = ""   # the model timed in the same loop, one inference of each in turn


@dataclass
class CandidateRecord:
    """One optimize candidate's numbers on one device as the store keeps them (`candidates` table)."""

    optimize_key: str
    device_name: str
    name: str
    techniques: list[str]
    status: str
    reason: str = ""
    model_digest: str | None = None
    model_path: str | None = None
    size_bytes: int | None = None
    latency_ms: dict[str, float] | None = None   # p50, p90, p99
    cv: float | None = None
    flags: list[str] = field(default_factory=list)
    accuracy: float | None = None
    fidelity: float | None = None
    run_id: int | None = None
    detail: dict = field(default_factory=dict)    # the rest, as JSON

    @classmethod
    def from_row(cls, d: dict) -> CandidateRecord:
        lat = {"p50": d["p50_ms"], "p90": d["p90_ms"], "p99": d["p99_ms"]} if d["p50_ms"] else None
        return cls(d["optimize_key"], d["device_name"], d["name"], json.loads(d["techniques"]), d["status"],
                   d["reason"] or "", d["model_digest"], d["model_path"], d["size_bytes"], lat, d["cv"],
                   [f for f in (d["flags"] or "").split(",") if f], d["accuracy"], d["fidelity"], d["run_id"],
                   json.loads(d["detail_json"] or "null") or {})

RUN_COLUMNS = ("id", "created_at", "kind", "status", "error_code", "error", "model_name", "model_path",
               "model_digest", "model_size", "device_name", "device_class", "device_fingerprint",
               "backend", "backend_version", "threads", "settings_key", "min_ms", "p50_ms", "p90_ms",
               "p99_ms", "mean_ms", "std_ms", "cv", "iterations", "load_ms", "first_inference_ms",
               "peak_memory_bytes", "flags", "p95_ms", "max_ms", "reference_digest")
TIMES_DTYPE = np.dtype("<f4")


class ResultsStore:
    """Runs and their per-layer rows, per-inference times, optimize candidates and NAS latency tables, in a
    SQLite file (a path) or a PostgreSQL database (a postgresql:// URL): the same tables and the same
    methods on both (store_sql.py holds what differs)."""

    masked = staticmethod(masked)   # store_sql.masked: a store, path or URL as printed (the password ***)

    def __init__(self, path: Path | str) -> None:
        self.db = open_database(path)
        self.dialect = self.db.dialect          # sqlite | postgresql
        self.path = self.db.path                # the file, or the URL without its password
        # one connection shared by the scheduler's device threads; the lock serializes its use
        self.lock = threading.RLock()

    @property
    def conn(self):
        """The database connection (a new one after a PostgreSQL server dropped the old)."""
        return self.db.conn

    def _write(self, step):
        """Run `step` in one transaction. When a PostgreSQL server drops the connection (a restart, a network
        cut) before the COMMIT, nothing of it was committed: reconnect (store_sql.RECONNECT_S) and run it once
        more. Dropped during the COMMIT itself, the write may be stored, so it is not run again: a StoreError."""
        with self.lock:
            try:
                with self.db.transaction():
                    return step()
            except Exception as exc:
                if not self.db.lost(exc):
                    raise
                if self.db.commit_sent:
                    raise StoreError(f"lost the connection to the results store {self.db.location} while it "
                                     "committed a write, which may or may not be stored; run the command again "
                                     "(a run may then be listed twice; optimize resumes from what is stored)") from None
            self.db.reconnect()
            with self.db.transaction():
                return step()

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_version(self) -> int:
        """The store's schema version."""
        with self.lock:
            return self.db.version()

    def record(self, run: RunRecord) -> int:
        """Insert one run (and its layer rows and times) in a single transaction; returns the run id."""
        row, layers = _run_row(run), list(run.layers)    # (a list: a retried write reads the layers again)
        return self._write(lambda: self._insert_run(row, layers, run))

    def _insert_run(self, row: dict, layers: list[dict], run: RunRecord) -> int:
        run_id = self.db.insert(f"INSERT INTO runs ({', '.join(row)}) VALUES ({_marks(row)})", row)
        self.db.executemany(
            "INSERT INTO layers (run_id, rank, name, op_type, time_ms, percent, flops, memory_bytes, "
            "input_shapes, output_shapes, source_nodes) VALUES (:run_id, :rank, :name, :op_type, :time_ms, "
            ":percent, :flops, :memory_bytes, :input_shapes, :output_shapes, :source_nodes)",
            [{"run_id": run_id, "rank": i, "name": r["name"], "op_type": r.get("op_type"),
              "time_ms": r.get("time_ms"), "percent": r.get("percent"), "flops": r.get("flops"),
              "memory_bytes": r.get("memory_bytes"),
              "input_shapes": json.dumps(r.get("input_shapes", [])),
              "output_shapes": json.dumps(r.get("output_shapes", [])),
              "source_nodes": json.dumps(list(r.get("source_nodes") or []))} for i, r in enumerate(layers)])
        times, ref_times = (np.asarray(run.times.get(k, ()), TIMES_DTYPE) for k in ("times_ms", "reference_times_ms"))
        if times.size:
            self.db.execute("INSERT INTO run_times (run_id, times, reference_times) VALUES (?, ?, ?)",
                            (run_id, times.tobytes(), ref_times.tobytes() if ref_times.size else None))
        return run_id

    def runs(self, *, model: str | None = None, device: str | None = None, kind: str | None = None,
             status: str | None = None, limit: int | None = None) -> list[dict]:
        """Runs, newest first, filtered by model name or digest prefix, device name, kind, status."""
        return self._select_runs(", ".join(RUN_COLUMNS), model, device, kind, status, limit)

    def count_runs(self, *, model: str | None = None, device: str | None = None, kind: str | None = None,
                   status: str | None = None) -> int:
        """How many runs pass the filters of runs() (counted by the database, no rows read)."""
        return self._select_runs("count(*) AS n", model, device, kind, status, None, order=False)[0]["n"]

    def _select_runs(self, columns: str, *filters, order: bool = True) -> list[dict]:
        model, device, kind, status, limit = filters
        where, args = [], []
        if model and HEX.fullmatch(model):   # a name, or the first hex digits of a digest
            where.append("(model_name = ? OR model_digest LIKE ?)")
            args += [model, model + "%"]
        elif model:
            where.append("model_name = ?")
            args.append(model)
        for col, val in (("device_name", device), ("kind", kind), ("status", status)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if order:
            sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.lock:
            return self.db.query(sql, args)

    def run(self, run_id: int) -> dict | None:
        """Every column of one run (its settings, result and device JSON included), or None."""
        with self.lock:
            rows = self.db.query("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        return rows[0] if rows else None

    def layers(self, run_id: int) -> list[dict]:
        """Per-layer rows of a profile run, in the order they were stored (slowest first)."""
        with self.lock:
            rows = self.db.query("SELECT * FROM layers WHERE run_id = ? ORDER BY rank", (int(run_id),))
        return [frames.parse_layer(r) for r in rows]

    def times(self, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A run's per-inference times (ms, in order) and its reference's, pair by pair; empty arrays when
        the store has none (a run stored before schema 4, a failed one)."""
        with self.lock:
            rows = self.db.query("SELECT times, reference_times FROM run_times WHERE run_id = ?", (int(run_id),))
        if not rows:
            return np.zeros(0, TIMES_DTYPE), np.zeros(0, TIMES_DTYPE)
        return tuple(np.frombuffer(bytes(rows[0][k] or b""), TIMES_DTYPE) for k in ("times", "reference_times"))

    def dataframe(self, table: str = "runs", **filters):
        """A table of the store as a pandas DataFrame with every stored column (JSON lists parsed):
        `runs` (filters as runs(): model, device, kind, status, limit; plus `times`, the number of
        per-inference times stored), `layers` (run=ID or a list of ids; default every run's; with the run's
        model and device), `candidates` (optimize_key=KEY, device=NAME; the paired speedup lifted out)."""
        frames.check_filters(table, filters)
        if table == "runs":
            cols = "*, (SELECT length(times) / 4 FROM run_times WHERE run_id = runs.id) AS times"
            rows = self._select_runs(cols, *(filters.get(k) for k in frames.FILTERS["runs"]))
        elif table == "layers":
            rows = self._layer_rows(filters.get("run"))
        else:
            rows = self._candidate_rows(filters.get("optimize_key"), filters.get("device"))
        return frames.frame(table, rows)

    def _layer_rows(self, run) -> list[dict]:
        ids = [run] if isinstance(run, int) else list(run or [])
        sql = ("SELECT layers.*, runs.model_name, runs.model_digest, runs.device_name, runs.kind FROM layers "
               "JOIN runs ON runs.id = layers.run_id")
        if run is not None:
            if not ids:
                return []
            sql += f" WHERE run_id IN ({', '.join('?' * len(ids))})"
        with self.lock:
            rows = self.db.query(sql + " ORDER BY run_id, rank", [int(i) for i in ids])
        return [frames.parse_layer(r) for r in rows]

    def _candidate_rows(self, optimize_key: str | None, device: str | None) -> list[dict]:
        where = [(c, v) for c, v in (("optimize_key", optimize_key), ("device_name", device)) if v]
        sql = "SELECT * FROM candidates" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where else "")
        with self.lock:   # in the order written: seq grows with every write (a rewritten row moves last)
            return self.db.query(sql + " ORDER BY seq, name", [v for _, v in where])

    def record_candidate(self, record: CandidateRecord) -> None:
        """Insert (or replace) one optimize candidate's numbers on one device, in one transaction."""
        lat = record.latency_ms or {}
        row = {"optimize_key": record.optimize_key, "device_name": record.device_name, "name": record.name,
               "created_at": _now(), "techniques": json.dumps(list(record.techniques)),
               "status": record.status, "reason": record.reason or None, "model_digest": record.model_digest,
               "model_path": record.model_path, "size_bytes": record.size_bytes, "p50_ms": lat.get("p50"),
               "p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"), "cv": record.cv, "flags": ",".join(record.flags),
               "accuracy": record.accuracy, "fidelity": record.fidelity, "run_id": record.run_id,
               "detail_json": json.dumps(record.detail, sort_keys=True, default=str) if record.detail else None}
        sql = (f"INSERT INTO candidates ({', '.join(row)}, seq) VALUES ({_marks(row)}, "
               "(SELECT COALESCE(MAX(seq), 0) + 1 FROM candidates)) " + _upsert(row, CANDIDATE_KEY, "seq"))
        self._write(lambda: self.db.execute(sql, row))

    def candidates(self, optimize_key: str, device_name: str | None = None) -> list[CandidateRecord]:
        """Stored candidates of one optimize run (optionally one device), oldest first."""
        return [CandidateRecord.from_row(r) for r in self._candidate_rows(optimize_key, device_name)]

    def lut_get(self, *, device_fingerprint: str, backend: str, backend_version: str,
                settings_key: str) -> dict[str, float]:
        """The latency lookup table stored for one device, backend and settings: {block key: p50 ms}."""
        with self.lock:
            rows = self.db.query(
                "SELECT block_key, p50_ms FROM latency_lut WHERE device_fingerprint = ? AND backend = ? AND "
                "backend_version = ? AND settings_key = ?",
                (device_fingerprint, backend, backend_version, settings_key))
        return {r["block_key"]: r["p50_ms"] for r in rows}

    def lut_put(self, *, device_fingerprint: str, backend: str, backend_version: str, settings_key: str,
                block_key: str, p50_ms: float, device_name: str = "", run_id: int | None = None) -> None:
        """Store one measured block latency (one transaction)."""
        row = {"device_fingerprint": device_fingerprint, "backend": backend, "backend_version": backend_version,
               "settings_key": settings_key, "block_key": block_key, "p50_ms": p50_ms, "device_name": device_name,
               "run_id": run_id, "created_at": _now()}
        self._write(lambda: self.db.execute(f"INSERT INTO latency_lut ({', '.join(row)}) VALUES ({_marks(row)}) "
                                            + _upsert(row, LUT_KEY), row))


HEX = re.compile(r"[0-9a-fA-F]+")
CANDIDATE_KEY = ("optimize_key", "device_name", "name")
LUT_KEY = ("device_fingerprint", "backend", "backend_version", "settings_key", "block_key")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _marks(row: dict) -> str:
    return ", ".join(f":{k}" for k in row)


def _upsert(row: dict, key: tuple[str, ...], *more: str) -> str:
    """ON CONFLICT (key) DO UPDATE: the row written replaces the stored one (SQLite and PostgreSQL alike)."""
    cols = [c for c in (*row, *more) if c not in key]
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in cols)


def _run_row(run: RunRecord) -> dict:
    """A RunRecord as its `runs` row."""
    model, device, settings, result = run.model, run.device, run.settings, run.result or {}
    lat = result.get("latency", {})
    return {
        "created_at": _now(), "kind": run.kind,
        "status": "failed" if run.error_code else "ok", "error_code": run.error_code, "error": run.error,
        "model_name": model["name"], "model_path": model.get("path"), "model_digest": model["digest"],
        "model_size": model.get("size"), "device_name": device["name"],
        "device_class": device.get("device_class"), "device_fingerprint": device.get("fingerprint", ""),
        "backend": run.backend, "backend_version": run.backend_version,
        "threads": result.get("threads") or settings.get("threads"),
        "settings_key": run.settings_key, "settings_json": json.dumps(settings, sort_keys=True),
        "min_ms": lat.get("min_ms"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
        "p99_ms": lat.get("p99_ms"), "mean_ms": lat.get("mean_ms"), "std_ms": lat.get("std_ms"),
        "cv": lat.get("cv"), "iterations": lat.get("count"),
        "p95_ms": lat.get("p95_ms") or None, "max_ms": lat.get("max_ms") or None,
        "reference_digest": run.reference_digest or None,
        "load_ms": result.get("load_ms"), "first_inference_ms": result.get("first_inference_ms"),
        "peak_memory_bytes": result.get("peak_memory_bytes"), "flags": ",".join(result.get("flags", [])),
        "result_json": json.dumps(run.result, sort_keys=True) if run.result else None,
        "device_json": json.dumps(device, sort_keys=True),
    }


@contextmanager
def opened(store: ResultsStore | Path | str | None) -> Iterator[ResultsStore | None]:
    """The store given (left open for its owner), one opened at a path or URL (closed after the block), or None."""
    if store is None or isinstance(store, ResultsStore):
        yield store
        return
    db = ResultsStore(store)
    try:
        yield db
    finally:
        db.close()
