"""The Python API (controller.measure.api) against real agents; the store; FLOPs; the inventory."""

from __future__ import annotations

import sqlite3

import pytest

from controller.errors import DeviceError, JobFailed, ModelError
from controller.fleet.inventory import connect, load_inventory, resolve_device
from controller.measure.api import bench, profile
from controller.measure.settings import MeasureSettings, parse_input_shape
from controller.measure.store import SCHEMA_VERSION, ResultsStore, RunRecord, StoreError
from optimizers.flops import graph_flops, node_flops, parse_shape_strings
from tests import models

FAST = MeasureSettings(threads=1, warmup=1, min_iterations=5, min_seconds=0.0, profile_iterations=5)


def test_bench_and_profile_from_python(start_agent, conv_onnx, tmp_path):
    client, _ = start_agent()
    store = ResultsStore(tmp_path / "r.db")
    b = bench(conv_onnx, device=client, settings=FAST, store=store)
    assert b.device == "test-agent" and b.iterations >= 5 and b.latency_ms["p50"] > 0
    assert b.upload_bytes == conv_onnx.stat().st_size
    p = profile(conv_onnx, device=client, settings=FAST, store=store)
    assert p.layers and p.total_flops > 0 and p.run_id == b.run_id + 1
    assert [r["kind"] for r in store.runs()] == ["profile", "benchmark"]


def test_failed_job_raises_and_is_stored(start_agent, model_dir, tmp_path):
    client, _ = start_agent()
    store = ResultsStore(tmp_path / "r.db")
    with pytest.raises(JobFailed) as info:
        bench(models.unknown_op_model(model_dir / "unknown.onnx"), device=client, settings=FAST, store=store)
    assert info.value.code == "UNSUPPORTED_OP"
    assert store.runs(status="failed")[0]["error_code"] == "UNSUPPORTED_OP"


def test_builtin_example_is_a_mobilenetv2(tmp_path):
    from controller.measure.examples import example_model
    from controller.measure.preflight import check_model

    path = example_model()
    ref = check_model(path)
    assert ref.input_shapes == {"input": [1, 3, 224, 224]}
    total = graph_flops(path, ref.input_shapes).total
    assert 0.55e9 < total < 0.7e9  # MobileNetV2 1.0 at 224: ~300M multiply-adds
    with pytest.raises(ModelError, match="built-in examples are: mobilenetv2"):
        from controller.measure.preflight import resolve_model
        resolve_model("example:resnet9000")


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


@pytest.mark.parametrize("op, ins, outs, attrs, flops", [
    ("Conv", [[1, 3, 8, 8], [16, 3, 3, 3]], [[1, 16, 8, 8]], {}, 2 * 16 * 64 * 27),
    ("Conv", [[1, 32, 8, 8], [32, 1, 3, 3]], [[1, 32, 8, 8]], {"group": 32}, 2 * 32 * 64 * 9),
    ("Gemm", [[4, 100], [100, 10]], [[4, 10]], {}, 2 * 4 * 10 * 100),
    ("Gemm", [[100, 4], [100, 10]], [[4, 10]], {"transA": 1}, 2 * 4 * 10 * 100),
    ("MatMul", [[2, 5, 64], [64, 32]], [[2, 5, 32]], {}, 2 * 10 * 32 * 64),
    ("Relu", [[1, 10]], [[1, 10]], {}, 10),
    ("MaxPool", [[1, 1, 4, 4]], [[1, 1, 2, 2]], {"kernel_shape": [2, 2]}, 16),
    ("Reshape", [[1, 10], [2]], [[2, 5]], {}, 0),
    ("Conv", [None, None], [None], {}, 0),
])
def test_node_flops(op, ins, outs, attrs, flops):
    assert node_flops(op, ins, outs, attrs) == flops


def test_fused_rows_map_back_to_graph_nodes(model_dir):
    from optimizers.flops import row_flops

    graph = graph_flops(models.conv_model(model_dir / "fused.onnx"), {})
    fused = {"name": "r_nchwc", "op_type": "Conv", "input_shapes": [], "output_shapes": []}
    assert row_flops(fused, graph) == (graph.nodes["conv"].flops + graph.nodes["relu"].flops, ["conv", "relu"])
    plain = {"name": "fc", "op_type": "Gemm"}
    assert row_flops(plain, graph) == (2 * 8 * 4, ["fc"])
    unknown = {"name": "ReorderOutput", "op_type": "ReorderOutput", "output_shapes": ["float[1,8,32,32]"]}
    assert row_flops(unknown, graph) == (0, [])
    relu_only = {"name": "x_nhwc", "op_type": "Relu", "output_shapes": ["float[1,10]"]}
    assert row_flops(relu_only, graph) == (10, [])  # no producer: computed from the reported shapes


def test_shape_strings_round_trip():
    assert parse_shape_strings(["float[1,3,224,224]", "int64[]", "weird"]) == [[1, 3, 224, 224], [], None]


def test_inventory(tmp_path, monkeypatch):
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local: {}\n  pi: {address: '10.0.0.5:50551', class: rpi4, token_env: PI_TOKEN}\n")
    devices = load_inventory(inv)
    assert devices["local"].embedded and devices["pi"].address == "10.0.0.5:50551"
    monkeypatch.setenv("PI_TOKEN", "t0k")
    assert devices["pi"].token() == "t0k"
    assert resolve_device("127.0.0.1:1234", devices).address == "127.0.0.1:1234"
    with pytest.raises(DeviceError, match="unknown device 'nope'; the inventory has devices: local, pi; classes: rpi4"):
        resolve_device("nope", devices)
    inv.write_text("devices:\n  pi: {class: rpi4}\n")
    with pytest.raises(DeviceError, match="needs an address"):
        load_inventory(inv)
    inv.write_text("devices: [\n")
    with pytest.raises(DeviceError, match="not valid YAML"):
        load_inventory(inv)


def test_connect_to_a_remote_entry_uses_its_token(start_agent, monkeypatch, tmp_path):
    (tmp_path / "token").write_text("abc\n")
    _, agent = start_agent("--token-file", str(tmp_path / "token"))
    devices = {"pi": resolve_device(f"127.0.0.1:{agent.port}", {})}
    devices["pi"].token_env = "MY_TOKEN"
    monkeypatch.setenv("MY_TOKEN", "abc")
    with connect(devices["pi"]) as client:
        assert client.info().name == "test-agent"


@pytest.mark.parametrize("text, parsed", [("x=1,3,224,224", ("x", [1, 3, 224, 224])),
                                          ("input:0=1x3x8x8", ("input:0", [1, 3, 8, 8]))])
def test_parse_input_shape(text, parsed):
    assert parse_input_shape(text) == parsed


def test_yolov8n_example_is_the_real_detector_with_a_fixed_input():
    """example:yolov8n: YOLOv8n as shipped in the nudenet wheel (unpacked by `make setup`), its dynamic input
    fixed to 1x3x320x320; its default data are scikit-image's sample photos."""
    import onnxruntime as ort

    from controller.measure.preflight import check_model, resolve_model
    from controller.optimization.sources import onnx_source

    ref = check_model(resolve_model("example:yolov8n"), {})
    assert ref.input_shapes == {"images": [1, 3, 320, 320]}
    assert sum(1 for n in ref.model.graph.node if n.op_type == "Conv") == 64
    source = onnx_source("example:yolov8n")
    assert len(source.evaluation.feeds) == 16 and "sample photos" in source.notes[0]
    out = ort.InferenceSession(str(ref.path)).run(None, source.evaluation.feeds[0])[0]
    assert out.shape == (1, 22, 2100) and 0.0 <= out[0, 4:].min() and out[0, 4:].max() <= 1.0  # class scores
