"""farmctl nas / run_nas on the local agent at small scale: the block latency table measured on the
device and reused, the constraint met as measured, bad input."""

from __future__ import annotations

import sqlite3

import pytest

pytestmark = pytest.mark.slow   # trains and measures NAS candidates

pytest.importorskip("torch")

from controller.cli.main import main  # noqa: E402
from controller.measure.settings import MeasureSettings  # noqa: E402
from controller.measure.undisturbed import Undisturbed  # noqa: E402
from controller.optimization.nas import run_nas  # noqa: E402
from optimizers import OptimizerError, UnknownOption  # noqa: E402
from optimizers.nas.search import NASOptimizer  # noqa: E402
from optimizers.nas.space import MobileNetV3Space  # noqa: E402

# a small corner of the space, so the table has few blocks and the test stays short
CHOICES = {"depth": (1,), "kernel": (3,), "expand": (2, 4), "width": (0.75, 1.0), "se": (False,), "act": ("relu",)}
# and short measurements, each taken at most twice (precision is the benchmark's job, not this test's)
RULE = Undisturbed(need=1, max_attempts=2)
SMALL = dict(iterations=2, population=2, proxy_epochs=1, proxy_samples=256, final_epochs=1, choices=CHOICES,
             settings=MeasureSettings(threads=1, warmup=5, min_iterations=50, min_seconds=0.05), rule=RULE)


def _bench_runs(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'benchmark'").fetchone()[0]


def test_search_meets_the_measured_latency_and_reuses_the_table(tmp_path):
    db = tmp_path / "r.db"
    first = run_nas("local", {"latency_ms": 2.0}, out_dir=tmp_path / "a", store=db, progress=lambda s: None,
                    **SMALL)
    assert first.failure is None and first.best is not None
    assert first.measured_ms <= 2.0  # measured on the local agent, not predicted
    assert first.blocks_measured == first.table_blocks > 0
    assert (tmp_path / "a" / "nas-best.onnx").exists() and (tmp_path / "a" / "nas.png").exists()
    assert len(first.history) >= 2 and all(h["predicted_ms"] > 0 for h in first.history)
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM latency_lut").fetchone()[0]
    assert stored == first.table_blocks + 2  # blocks and their input probes, the fitted scale, the reference

    runs_before = _bench_runs(db)
    second = run_nas("local", {"latency_ms": 2.0}, out_dir=tmp_path / "b", store=db, progress=lambda s: None,
                     **SMALL)
    assert second.blocks_measured == 0 and second.table_blocks == first.table_blocks
    # only the reference (3 times, to find the device's undisturbed speed) and the found model itself
    assert runs_before + 3 + RULE.need <= _bench_runs(db) <= runs_before + 3 + RULE.max_attempts


def test_impossible_constraint_names_the_closest(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "r.db"), "nas", "--latency-ms", "0.0001", "--iterations", "1",
                 "--calibrate", "0",
                 "--population", "2", "--proxy-samples", "64", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "no architecture in the space meets" in err and "below this device's fixed cost of one inference" in err


def test_closest_are_named_when_nothing_fits(tmp_path):
    run = run_nas("local", {"latency_ms": 2.0, "model_size_mb": 0.001}, out_dir=tmp_path, store=tmp_path / "r.db",
                  progress=lambda s: None, **SMALL)
    assert run.best is None and "closest found" in run.failure and "> model_size_mb 0.001" in run.failure


def test_bad_input():
    with pytest.raises(UnknownOption, match="mobilenet_v3"):
        NASOptimizer("resnet_xl")
    with pytest.raises(OptimizerError, match="latency_table"):
        NASOptimizer()
    with pytest.raises(OptimizerError, match="unknown constraint"):
        NASOptimizer(constraints={"fps": 30})
    with pytest.raises(OptimizerError, match="unknown search-space choice"):
        MobileNetV3Space(choices={"dilation": (1, 2)})


def test_space_blocks_and_models_agree():
    import random

    import torch

    space = MobileNetV3Space()
    arch = space.sample(random.Random(0))
    blocks = space.blocks(arch)
    assert blocks[0].kind == "stem" and blocks[-1].kind == "head"
    assert len(blocks) == 2 + sum(s.depth for s in arch.stages)
    out = space.build(arch)(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10)
    child = space.mutate(arch, random.Random(1))
    assert sum(a != b for a, b in zip(arch.stages, child.stages)) == 1
    assert type(arch).from_json(arch.to_json()) == arch


def test_nas_on_the_users_own_three_channel_data_from_the_cli(tmp_path, capsys):
    """--data: scikit-learn's digits upsampled to 3x32x32 (not the built-in 1x28x28), searched within a
    latency limit and measured on the local agent; the found model takes 3x32x32 and has 10 classes."""
    import json

    import numpy as np
    import onnx
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.repeat(np.kron(d.images[:600], np.ones((4, 4)))[:, None] / 16.0, 3, axis=1).astype(np.float32)
    np.savez(tmp_path / "digits32.npz", x=x, y=d.target[:600])
    code = main(["-q", "--store", str(tmp_path / "r.db"), "nas", "--data", str(tmp_path / "digits32.npz"),
                 "--max-latency-ms", "5", "--iterations", "1", "--population", "2", "--proxy-epochs", "1",
                 "--proxy-samples", "256", "--final-epochs", "1", "--calibrate", "0", "--max-attempts", "2",
                 "--out", str(tmp_path / "out"), "--json"])
    run = json.loads(capsys.readouterr().out)
    assert code == 0, run["failure"]
    assert run["measured_ms"] <= 5.0
    model = onnx.load(str(tmp_path / "out" / "nas-best.onnx"))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 32]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10


def test_the_space_scales_its_strides_to_the_input_size():
    import random

    for size, last in ((28, 7), (32, 8), (96, 6), (224, 7)):
        space = MobileNetV3Space((1, 3, size, size), num_classes=5)
        assert space.blocks(space.sample(random.Random(0)))[-1].size == last
    with pytest.raises(OptimizerError, match="square images"):
        MobileNetV3Space((1, 3, 32, 48))
