"""The results store's schema: one list of numbered migrations for both databases.

Each migration is a list of statements. A statement is written once, in the subset of SQL both SQLite and
PostgreSQL take, with SQLite's type names; `statements()` gives it to PostgreSQL with the types it means
there (an 8-byte REAL, a 64-bit INTEGER, BYTEA for BLOB, an identity column for `id INTEGER PRIMARY KEY`).
The one statement that cannot be written once (reading JSON) is a `Dialects` pair."""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEMA_VERSION = 5


@dataclass(frozen=True)
class Dialects:
    """One statement spelled for each database; None: nothing to do on that one."""

    sqlite: str | None
    postgresql: str | None


# index i brings a store from version i to i + 1
MIGRATIONS: list[list[str | Dialects]] = [
    [
        """CREATE TABLE runs (
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
        )""",
        """CREATE INDEX runs_identity ON runs (model_digest, device_fingerprint, backend, backend_version,
                                               settings_key, kind)""",
        """CREATE TABLE layers (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL, name TEXT NOT NULL, op_type TEXT, time_ms REAL, percent REAL,
            flops INTEGER, memory_bytes INTEGER, input_shapes TEXT, output_shapes TEXT,
            PRIMARY KEY (run_id, rank)
        )""",
    ],
    [
        """CREATE TABLE candidates (
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
        )""",
    ],
    [
        """CREATE TABLE latency_lut (
            device_fingerprint TEXT NOT NULL,   -- the device's identity (hardware + OS + runtime)
            backend TEXT NOT NULL, backend_version TEXT NOT NULL,
            settings_key TEXT NOT NULL,         -- threads and measurement settings
            block_key TEXT NOT NULL,            -- one NAS block configuration (or 'overhead')
            p50_ms REAL NOT NULL,
            device_name TEXT, run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL, created_at TEXT NOT NULL,
            PRIMARY KEY (device_fingerprint, backend, backend_version, settings_key, block_key)
        )""",
    ],
    [
        "ALTER TABLE runs ADD COLUMN p95_ms REAL",
        "ALTER TABLE runs ADD COLUMN max_ms REAL",
        "ALTER TABLE runs ADD COLUMN reference_digest TEXT",
        Dialects(
            sqlite="""UPDATE runs SET p95_ms = NULLIF(json_extract(result_json, '$.latency.p95_ms'), 0),
                                      max_ms = NULLIF(json_extract(result_json, '$.latency.max_ms'), 0)
                                WHERE result_json IS NOT NULL""",
            postgresql="""UPDATE runs
                             SET p95_ms = NULLIF((result_json::jsonb #>> '{latency,p95_ms}')::double precision, 0),
                                 max_ms = NULLIF((result_json::jsonb #>> '{latency,max_ms}')::double precision, 0)
                           WHERE result_json IS NOT NULL"""),
        "ALTER TABLE layers ADD COLUMN source_nodes TEXT",
        """CREATE TABLE run_times (
            run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
            times BLOB NOT NULL,                -- per-inference ms in order, float32 little-endian
            reference_times BLOB                -- the reference's, the i-th right after times[i] (paired)
        )""",
    ],
    [
        # the order candidates were written in (a rewritten one moves to the end), which SQLite kept in its
        # rowid and PostgreSQL keeps nowhere else
        "ALTER TABLE candidates ADD COLUMN seq INTEGER",
        Dialects(sqlite="UPDATE candidates SET seq = rowid",
                 # (PostgreSQL stores start at this schema; rows of an older one would keep their physical order)
                 postgresql="""UPDATE candidates SET seq = o.n
                                 FROM (SELECT ctid AS row, row_number() OVER (ORDER BY ctid) AS n FROM candidates) AS o
                                WHERE candidates.ctid = o.row"""),
        "CREATE INDEX candidates_seq ON candidates (optimize_key, seq)",
    ],
]

_POSTGRES_TYPES = [(re.compile(r"\bid INTEGER PRIMARY KEY\b"), "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
                   (re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
                   (re.compile(r"\bBLOB\b"), "BYTEA")]


def statements(version: int, dialect: str) -> list[str]:
    """The statements that bring a store from `version` to `version + 1`, for 'sqlite' or 'postgresql'."""
    out = []
    for stmt in MIGRATIONS[version]:
        text = getattr(stmt, dialect) if isinstance(stmt, Dialects) else stmt
        if text is not None and dialect == "postgresql" and not isinstance(stmt, Dialects):
            for pattern, replacement in _POSTGRES_TYPES:
                text = pattern.sub(replacement, text)
        if text is not None:
            out.append(text)
    return out
