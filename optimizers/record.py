"""What every technique returns: the new model file and a record of what was done to it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Skipped:
    """A node a technique left as it was, and why."""

    node: str
    op_type: str
    reason: str


@dataclass
class OptimizationRecord:
    """Technique, settings and source digest, plus what changed (sizes, rewrites, skipped nodes)."""

    technique: str
    settings: dict[str, Any]
    source: str
    source_digest: str
    source_size_bytes: int
    output_digest: str = ""
    output_size_bytes: int = 0
    changes: dict[str, int] = field(default_factory=dict)   # e.g. {"BatchNormalization folded": 52}
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)    # e.g. fidelity, weight-size ratios
    elapsed_s: float = 0.0
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def skipped_summary(self) -> dict[str, str]:
        """Skipped nodes grouped by op type: {op_type: 'N nodes: reason'}."""
        groups: dict[str, list[Skipped]] = {}
        for s in self.skipped:
            groups.setdefault(s.op_type, []).append(s)
        return {op: f"{len(items)} node(s): {items[0].reason}" for op, items in sorted(groups.items())}


@dataclass
class OptimizedModel:
    """A model file a technique wrote, with its record (also saved beside it as NAME.json)."""

    path: Path
    record: OptimizationRecord

    @property
    def size_bytes(self) -> int:
        return self.record.output_size_bytes

    @property
    def size_ratio(self) -> float:
        """Source size / output size (4.0 means four times smaller)."""
        return self.record.source_size_bytes / max(self.record.output_size_bytes, 1)

    @property
    def record_path(self) -> Path:
        return self.path.with_suffix(".json")

    def save_record(self) -> Path:
        self.record_path.write_text(json.dumps(self.record.to_json(), indent=2, default=str))
        return self.record_path

    def __fspath__(self) -> str:
        return str(self.path)


def write_result(model, path: Path, record: OptimizationRecord, started: float) -> OptimizedModel:
    """Save the model as one file, fill the record's output fields, save the record beside it."""
    from optimizers.graph.model import save_model

    record.output_digest, record.output_size_bytes = save_model(model, path)
    record.elapsed_s = round(time.perf_counter() - started, 3)
    result = OptimizedModel(path=path, record=record)
    result.save_record()
    return result
