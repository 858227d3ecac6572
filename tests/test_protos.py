"""The committed stubs must equal a fresh generation from protos/agent.proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_fresh(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for fresh in gen.generate(tmp_path):
        committed = ROOT / "protos" / fresh.name
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"protos/{fresh.name} is stale: run `python scripts/gen_protos.py` and commit the result")
