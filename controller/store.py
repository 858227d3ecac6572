"""Results store: every measured number in SQLite (WAL), written in a transaction as it arrives."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

SCHEMA_VERSION = 1

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
]

RUN_COLUMNS = ("id", "created_at", "kind", "status", "error_code", "error", "model_name", "model_path",
               "model_digest", "model_size", "device_name", "device_class", "device_fingerprint",
               "backend", "backend_version", "threads", "settings_key", "min_ms", "p50_ms", "p90_ms",
               "p99_ms", "mean_ms", "std_ms", "cv", "iterations", "load_ms", "first_inference_ms",
               "peak_memory_bytes", "flags")


class StoreError(Exception):
    """The store file cannot be used (newer schema, not SQLite)."""


class ResultsStore:
    """A SQLite file holding runs and their per-layer rows."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"'{self.path}' is not a usable results store ({exc}); point --store at "
                             "another file") from None

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"'{self.path}' has schema version {version}, newer than this edgefarm "
                             f"({SCHEMA_VERSION}); upgrade edgefarm")
        for i in range(version, SCHEMA_VERSION):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
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

    def schema_version(self) -> int:
        """The store's schema version."""
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def record(self, *, kind: str, model: dict, device: dict, backend: str, backend_version: str,
               settings: dict, settings_key: str, result: dict | None = None,
               layers: Iterable[dict] = (), error_code: str | None = None, error: str | None = None) -> int:
        """Insert one run (and its layer rows) in a single transaction; returns the run id."""
        lat = (result or {}).get("latency", {})
        row = {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": kind,
            "status": "failed" if error_code else "ok", "error_code": error_code, "error": error,
            "model_name": model["name"], "model_path": model.get("path"), "model_digest": model["digest"],
            "model_size": model.get("size"), "device_name": device["name"],
            "device_class": device.get("device_class"), "device_fingerprint": device.get("fingerprint", ""),
            "backend": backend, "backend_version": backend_version,
            "threads": (result or {}).get("threads") or settings.get("threads"),
            "settings_key": settings_key, "settings_json": json.dumps(settings, sort_keys=True),
            "min_ms": lat.get("min_ms"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
            "p99_ms": lat.get("p99_ms"), "mean_ms": lat.get("mean_ms"), "std_ms": lat.get("std_ms"),
            "cv": lat.get("cv"), "iterations": lat.get("count"),
            "load_ms": (result or {}).get("load_ms"),
            "first_inference_ms": (result or {}).get("first_inference_ms"),
            "peak_memory_bytes": (result or {}).get("peak_memory_bytes"),
            "flags": ",".join((result or {}).get("flags", [])),
            "result_json": json.dumps(result, sort_keys=True) if result else None,
            "device_json": json.dumps(device, sort_keys=True),
        }
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            run_id = self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", row).lastrowid
            self.conn.executemany(
                "INSERT INTO layers VALUES (:run_id, :rank, :name, :op_type, :time_ms, :percent, :flops, "
                ":memory_bytes, :input_shapes, :output_shapes)",
                [{"run_id": run_id, "rank": i, "name": r["name"], "op_type": r.get("op_type"),
                  "time_ms": r.get("time_ms"), "percent": r.get("percent"), "flops": r.get("flops"),
                  "memory_bytes": r.get("memory_bytes"),
                  "input_shapes": json.dumps(r.get("input_shapes", [])),
                  "output_shapes": json.dumps(r.get("output_shapes", []))} for i, r in enumerate(layers)])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return run_id

    def runs(self, *, model: str | None = None, device: str | None = None, kind: str | None = None,
             status: str | None = None, limit: int | None = None) -> list[dict]:
        """Runs, newest first, filtered by model name or digest prefix, device name, kind, status."""
        where, args = [], []
        if model:
            where.append("(model_name = ? OR model_digest LIKE ?)")
            args += [model, model + "%"]
        for col, val in (("device_name", device), ("kind", kind), ("status", status)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [dict(r) for r in self.conn.execute(sql, args)]

    def layers(self, run_id: int) -> list[dict]:
        """Per-layer rows of a profile run, in the order they were stored (slowest first)."""
        rows = self.conn.execute("SELECT * FROM layers WHERE run_id = ? ORDER BY rank", (run_id,))
        return [{**dict(r), "input_shapes": json.loads(r["input_shapes"]),
                 "output_shapes": json.loads(r["output_shapes"])} for r in rows]
