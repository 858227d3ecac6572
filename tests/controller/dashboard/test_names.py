"""The dashboard names an optimize run's model as its report and plot do (the built-in example's baseline file
is baseline.onnx, its name digits-mobilenetv2)."""

from __future__ import annotations

from controller.dashboard.data import optimize_runs
from controller.measure.store import CandidateRecord, ResultsStore


def _baseline(path: str, detail: dict) -> CandidateRecord:
    return CandidateRecord("k1", "local", "baseline", [], "ok", "", "d" * 64, path, 1000, {"p50": 1.0}, 0.01, [],
                           None, 1.0, None, detail)


def test_the_run_is_named_after_the_model_not_its_baseline_file(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.record_candidate(_baseline(str(tmp_path / "opt" / "baseline.onnx"), {"model": "digits-mobilenetv2"}))
        assert [r.model for r in optimize_runs(store)] == ["digits-mobilenetv2"]


def test_older_stores_fall_back_to_the_file_name(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.record_candidate(_baseline(str(tmp_path / "yolo.onnx"), {}))
        assert [r.model for r in optimize_runs(store)] == ["yolo"]
