"""Results store: every measured number in SQLite (WAL), written in a transaction as it arrives."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.errors import FarmError
from controller.measure import frames

SCHEMA_VERSION = 4

# Migrations: index i brings a store from user_version i to i+1.
MIGRATIONS = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        kind TEXT NOT NULL,                 -- benchmark | profile
        status TEXT NOT NULL,               -- ok | failed
        error_code TEXT, error TEXT,
        model_name TEXT NOT NULL, model_path TEXT, model_digest TEXT NOT NULL, model_size INTEGER,
        device_name TEXT NOT NULL, device_class TEXT, device_fingerprint TEXT NOT NULL,
        backend TEXT NOT NULL, backend_version TEXT,
        threads INTEGER, settings_key TEXT NOT NULL, settings_json TEXT NOT NULL,
        min_ms REAL, p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, cv REAL,
        iterations INTEGER, load_ms REAL, first_inference_ms REAL, peak_memory_bytes INTEGER,
        flags TEXT NOT NULL DEFAULT '', result_json TEXT, device_json TEXT
    );
    CREATE INDEX runs_identity ON runs (model_digest, device_fingerprint, backend, backend_version,
                                        settings_key, kind);
    CREATE TABLE layers (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        rank INTEGER NOT NULL, name TEXT NOT NULL, op_type TEXT, time_ms REAL, percent REAL,
        flops INTEGER, memory_bytes INTEGER, input_shapes TEXT, output_shapes TEXT,
        PRIMARY KEY (run_id, rank)
    );
    """,
    """
    CREATE TABLE candidates (
        optimize_key TEXT NOT NULL,         -- identity of one optimize run: model digest + its arguments
        device_name TEXT NOT NULL,
        name TEXT NOT NULL,                 -- e.g. int8-kl, prune-50+int8-minmax
        created_at TEXT NOT NULL,
        techniques TEXT NOT NULL,           -- JSON list
        status TEXT NOT NULL,               -- ok (measured) | failed (build, measurement or evaluation)
        reason TEXT,
        model_digest TEXT, model_path TEXT, size_bytes INTEGER,
        p50_ms REAL, p90_ms REAL, p99_ms REAL, cv REAL, flags TEXT NOT NULL DEFAULT '',
        accuracy REAL, fidelity REAL,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        detail_json TEXT,
        PRIMARY KEY (optimize_key, device_name, name)
    );
    """,
    """
    CREATE TABLE latency_lut (
        device_fingerprint TEXT NOT NULL,   -- the device's identity (hardware + OS + runtime)
        backend TEXT NOT NULL, backend_version TEXT NOT NULL,
        settings_key TEXT NOT NULL,         -- threads and measurement settings
        block_key TEXT NOT NULL,            -- one NAS block configuration (or 'overhead')
        p50_ms REAL NOT NULL,
        device_name TEXT, run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (device_fingerprint, backend, backend_version, settings_key, block_key)
    );
    """,
    """
    ALTER TABLE runs ADD COLUMN p95_ms REAL;
    ALTER TABLE runs ADD COLUMN max_ms REAL;
    ALTER TABLE runs ADD COLUMN reference_digest TEXT;
    UPDATE runs SET p95_ms = NULLIF(json_extract(result_json, '$.latency.p95_ms'), 0),
                    max_ms = NULLIF(json_extract(result_json, '$.latency.max_ms'), 0)
              WHERE result_json IS NOT NULL;
    ALTER TABLE layers ADD COLUMN source_nodes TEXT;
    CREATE TABLE run_times (
        run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
        times BLOB NOT NULL,                -- per-inference ms in order, float32 little-endian
        reference_times BLOB                -- the reference's, the i-th right after times[i] (paired)
    );
    """,
]


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


class StoreError(FarmError):
    """The store file cannot be used (newer schema, not SQLite): one line from farmctl, exit status 1."""


def _retry_locked(step, seconds: float = 30.0):
    """Run a statement SQLite may refuse with 'database is locked' without calling its busy handler (the
    switch to WAL of a file another process is creating), retrying for up to `seconds`."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class ResultsStore:
    """A SQLite file holding runs and their per-layer rows."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the scheduler's device threads; the lock serializes its use
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self.lock = threading.RLock()
        self.conn.row_factory = sqlite3.Row
        try:
            _retry_locked(lambda: self.conn.execute("PRAGMA journal_mode=WAL"))
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"'{self.path}' is not a usable results store ({exc}); point --store at "
                             "another file") from None

    def _migrate(self) -> None:
        """Bring the schema up to date in one write transaction, the version read inside it: two processes
        opening a new store at once cannot both create it."""
        self.conn.execute("BEGIN IMMEDIATE")   # waits (busy timeout) for another process's migration
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"'{self.path}' has schema version {version}, newer than this edgefarm "
                                 f"({SCHEMA_VERSION}); upgrade edgefarm")
            for i in range(version, SCHEMA_VERSION):
                for stmt in (s.strip() for s in MIGRATIONS[i].split(";")):
                    if stmt:
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {i + 1}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_version(self) -> int:
        """The store's schema version."""
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def record(self, run: RunRecord) -> int:
        """Insert one run (and its layer rows) in a single transaction; returns the run id."""
        kind, model, device, settings, result = run.kind, run.model, run.device, run.settings, run.result
        error_code, error, backend = run.error_code, run.error, run.backend
        lat = (result or {}).get("latency", {})
        row = {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": kind,
            "status": "failed" if error_code else "ok", "error_code": error_code, "error": error,
            "model_name": model["name"], "model_path": model.get("path"), "model_digest": model["digest"],
            "model_size": model.get("size"), "device_name": device["name"],
            "device_class": device.get("device_class"), "device_fingerprint": device.get("fingerprint", ""),
            "backend": backend, "backend_version": run.backend_version,
            "threads": (result or {}).get("threads") or settings.get("threads"),
            "settings_key": run.settings_key, "settings_json": json.dumps(settings, sort_keys=True),
            "min_ms": lat.get("min_ms"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
            "p99_ms": lat.get("p99_ms"), "mean_ms": lat.get("mean_ms"), "std_ms": lat.get("std_ms"),
            "cv": lat.get("cv"), "iterations": lat.get("count"),
            "p95_ms": lat.get("p95_ms") or None, "max_ms": lat.get("max_ms") or None,
            "reference_digest": run.reference_digest or None,
            "load_ms": (result or {}).get("load_ms"),
            "first_inference_ms": (result or {}).get("first_inference_ms"),
            "peak_memory_bytes": (result or {}).get("peak_memory_bytes"),
            "flags": ",".join((result or {}).get("flags", [])),
            "result_json": json.dumps(result, sort_keys=True) if result else None,
            "device_json": json.dumps(device, sort_keys=True),
        }
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self.lock:
            return self._insert_run(cols, marks, row, run)

    def _insert_run(self, cols: str, marks: str, row: dict, run: RunRecord) -> int:
        times, ref_times = (np.asarray(run.times.get(k, ()), TIMES_DTYPE) for k in ("times_ms", "reference_times_ms"))
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            run_id = self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", row).lastrowid
            self.conn.executemany(
                "INSERT INTO layers (run_id, rank, name, op_type, time_ms, percent, flops, memory_bytes, "
                "input_shapes, output_shapes, source_nodes) VALUES (:run_id, :rank, :name, :op_type, :time_ms, "
                ":percent, :flops, :memory_bytes, :input_shapes, :output_shapes, :source_nodes)",
                [{"run_id": run_id, "rank": i, "name": r["name"], "op_type": r.get("op_type"),
                  "time_ms": r.get("time_ms"), "percent": r.get("percent"), "flops": r.get("flops"),
                  "memory_bytes": r.get("memory_bytes"),
                  "input_shapes": json.dumps(r.get("input_shapes", [])),
                  "output_shapes": json.dumps(r.get("output_shapes", [])),
                  "source_nodes": json.dumps(list(r.get("source_nodes") or []))} for i, r in enumerate(run.layers)])
            if times.size:
                self.conn.execute("INSERT INTO run_times VALUES (?, ?, ?)",
                                  (run_id, times.tobytes(), ref_times.tobytes() if ref_times.size else None))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return run_id

    def runs(self, *, model: str | None = None, device: str | None = None, kind: str | None = None,
             status: str | None = None, limit: int | None = None) -> list[dict]:
        """Runs, newest first, filtered by model name or digest prefix, device name, kind, status."""
        return self._select_runs(", ".join(RUN_COLUMNS), model, device, kind, status, limit)

    def _select_runs(self, columns: str, *filters) -> list[dict]:
        model, device, kind, status, limit = filters
        where, args = [], []
        if model:
            where.append("(model_name = ? OR model_digest LIKE ?)")
            args += [model, model + "%"]
        for col, val in (("device_name", device), ("kind", kind), ("status", status)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.lock:
            return [dict(r) for r in self.conn.execute(sql, args)]

    def run(self, run_id: int) -> dict | None:
        """Every column of one run (its settings, result and device JSON included), or None."""
        with self.lock:
            row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        return dict(row) if row else None

    def layers(self, run_id: int) -> list[dict]:
        """Per-layer rows of a profile run, in the order they were stored (slowest first)."""
        with self.lock:
            rows = self.conn.execute("SELECT * FROM layers WHERE run_id = ? ORDER BY rank", (run_id,)).fetchall()
        return [frames.parse_layer(dict(r)) for r in rows]

    def times(self, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        """A run's per-inference times (ms, in order) and its reference's, pair by pair; empty arrays when
        the store has none (a run stored before schema 4, a failed one)."""
        with self.lock:
            row = self.conn.execute("SELECT times, reference_times FROM run_times WHERE run_id = ?",
                                    (int(run_id),)).fetchone()
        if row is None:
            return np.zeros(0, TIMES_DTYPE), np.zeros(0, TIMES_DTYPE)
        return tuple(np.frombuffer(b or b"", TIMES_DTYPE) for b in row)

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
            sql += f" WHERE run_id IN ({', '.join('?' * len(ids))})"
        with self.lock:
            rows = self.conn.execute(sql + " ORDER BY run_id, rank", [int(i) for i in ids]).fetchall()
        return [frames.parse_layer(dict(r)) for r in rows]

    def _candidate_rows(self, optimize_key: str | None, device: str | None) -> list[dict]:
        where = [(c, v) for c, v in (("optimize_key", optimize_key), ("device_name", device)) if v]
        sql = "SELECT * FROM candidates" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where else "")
        with self.lock:
            return [dict(r) for r in self.conn.execute(sql + " ORDER BY created_at, rowid", [v for _, v in where])]

    def record_candidate(self, record: CandidateRecord) -> None:
        """Insert (or replace) one optimize candidate's numbers on one device, in one transaction."""
        lat = record.latency_ms or {}
        row = {"optimize_key": record.optimize_key, "device_name": record.device_name, "name": record.name,
               "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "techniques": json.dumps(list(record.techniques)),
               "status": record.status, "reason": record.reason or None, "model_digest": record.model_digest,
               "model_path": record.model_path, "size_bytes": record.size_bytes, "p50_ms": lat.get("p50"),
               "p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"), "cv": record.cv, "flags": ",".join(record.flags),
               "accuracy": record.accuracy, "fidelity": record.fidelity, "run_id": record.run_id,
               "detail_json": json.dumps(record.detail, sort_keys=True, default=str) if record.detail else None}
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute(f"INSERT OR REPLACE INTO candidates ({cols}) VALUES ({marks})", row)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def candidates(self, optimize_key: str, device_name: str | None = None) -> list[CandidateRecord]:
        """Stored candidates of one optimize run (optionally one device), oldest first."""
        return [CandidateRecord.from_row(r) for r in self._candidate_rows(optimize_key, device_name)]

    def lut_get(self, *, device_fingerprint: str, backend: str, backend_version: str,
                settings_key: str) -> dict[str, float]:
        """The latency lookup table stored for one device, backend and settings: {block key: p50 ms}."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT block_key, p50_ms FROM latency_lut WHERE device_fingerprint = ? AND backend = ? AND "
                "backend_version = ? AND settings_key = ?",
                (device_fingerprint, backend, backend_version, settings_key)).fetchall()
        return {r[0]: r[1] for r in rows}

    def lut_put(self, *, device_fingerprint: str, backend: str, backend_version: str, settings_key: str,
                block_key: str, p50_ms: float, device_name: str = "", run_id: int | None = None) -> None:
        """Store one measured block latency (one transaction)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute(
                    "INSERT OR REPLACE INTO latency_lut VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (device_fingerprint, backend, backend_version, settings_key, block_key, p50_ms, device_name,
                     run_id, time.strftime("%Y-%m-%dT%H:%M:%S%z")))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise


@contextmanager
def opened(store: ResultsStore | Path | str | None) -> Iterator[ResultsStore | None]:
    """The store given (left open for its owner), one opened at a path (closed after the block), or None."""
    if store is None or isinstance(store, ResultsStore):
        yield store
        return
    db = ResultsStore(store)
    try:
        yield db
    finally:
        db.close()
