"""int8-measured from Python: in-process profiles of a real detector's float and INT8 files, the INT8 rows
mapped back to the float layers, and the layers measured slower kept float in the result."""

from __future__ import annotations

import onnx
import pytest

from optimizers import MeasuredPrecisionOptimizer, Profiler, Quantizer, evaluate
from optimizers.quantization.measured_precision import SLOWER_MARGIN, least_disturbed, profile_rows

pytestmark = pytest.mark.slow   # profiles INT8 and float on an agent


@pytest.fixture(scope="module")
def yolo():
    from controller.optimization.sources import onnx_source

    return onnx_source("example:yolov8n")


def test_measured_precision_keeps_the_measured_slower_layers_float(yolo, tmp_path):
    int8 = Quantizer("int8").quantize(yolo.baseline, calibration_data=yolo.calibration, output=tmp_path / "q.onnx")
    rounds = {"float": [], "int8": []}
    for _ in range(2):   # alternately, each layer's fastest round
        rounds["int8"].append(profile_rows(Profiler(int8.path, threads=1).profile(iterations=10, warmup=2)))
        rounds["float"].append(profile_rows(Profiler(yolo.baseline, threads=1).profile(iterations=10, warmup=2)))
    opt = MeasuredPrecisionOptimizer(least_disturbed(rounds["float"]), least_disturbed(rounds["int8"]), int8.path,
                                     accuracy_threshold=0.99)
    convs = {n.name for n in onnx.load(str(yolo.baseline)).graph.node if n.op_type == "Conv"}
    timed = {t.node for t in opt.timings}
    assert len(convs & timed) >= 60    # every QLinearConv row found its float Conv (64 in YOLOv8n)
    for t in opt.timings:
        assert t.slower == (t.node in opt.slower)
        if t.slower:
            assert t.int8_ms > t.float_ms * SLOWER_MARGIN
    out = opt.optimize(yolo.baseline, yolo.calibration, yolo.evaluation, output=tmp_path / "measured.onnx")
    assert out.record.settings["measured_slower_in_int8"] == opt.slower
    model = onnx.load(str(out.path))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    float_convs = {n.name for n in model.graph.node
                   if n.op_type == "Conv" and inits.get(n.input[1]) == onnx.TensorProto.FLOAT}
    assert {n for n in opt.slower if n in convs} <= float_convs
    assert evaluate(out.path, yolo.evaluation, reference=yolo.baseline).fidelity.cosine >= 0.99


def _qdq_graph():
    """x -> Q -> DQ -> conv -> Q -> DQ -> (relu in float) -> Q -> DQ -> (conv2, conv3), as a QDQ file names
    its nodes: what int8_layer_times maps the runtime's rows back through."""
    from onnx import helper

    n = helper.make_node
    nodes = [n("QuantizeLinear", ["x", "s", "z"], ["xq"], name="x_QuantizeLinear"),
             n("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="x_DequantizeLinear"),
             n("Conv", ["xd", "w"], ["c"], name="conv"),
             n("QuantizeLinear", ["c", "s", "z"], ["cq"], name="c_QuantizeLinear"),
             n("DequantizeLinear", ["cq", "s", "z"], ["cd"], name="c_DequantizeLinear"),
             n("Relu", ["cd"], ["r"], name="relu"),
             n("QuantizeLinear", ["r", "s", "z"], ["rq"], name="r_QuantizeLinear"),
             n("DequantizeLinear", ["rq", "s", "z"], ["rd"], name="r_DequantizeLinear"),
             n("Conv", ["rd", "w"], ["y2"], name="conv2"),
             n("Conv", ["rd", "w"], ["y3"], name="conv3")]
    return helper.make_model(helper.make_graph(nodes, "qdq", [], []))


def test_int8_rows_map_to_the_float_nodes_that_need_them():
    from optimizers.quantization.measured_precision import int8_layer_times, measured_timings

    rows = [{"name": "conv_token_3", "time_ms": 2.0}, {"name": "x_QuantizeLinear", "time_ms": 0.4},
            {"name": "c_DequantizeLinear", "time_ms": 0.3}, {"name": "r_QuantizeLinear", "time_ms": 0.6},
            {"name": "conv2_token_9", "time_ms": 1.0}, {"name": "conv3", "time_ms": 1.0},
            {"name": "Transpose_token_1", "time_ms": 5.0}]
    times = int8_layer_times(rows, _qdq_graph(), {"conv", "relu", "conv2", "conv3"})
    # the input's Quantize and the output's Dequantize are the Conv's; a Quantize read by two quantized
    # Convs is split between them; a row of the runtime's own (a layout Transpose) belongs to nobody
    assert times == pytest.approx({"conv": 2.7, "conv2": 1.3, "conv3": 1.3})
    # a Conv+Relu fused in float is compared as one row with the INT8 time of both its nodes
    float_rows = [{"name": "r_nchwc", "time_ms": 1.0, "source_nodes": ["conv", "relu"]},
                  {"name": "conv2", "time_ms": 1.25}, {"name": "conv3", "time_ms": 2.0}]
    timings = {t.node: t for t in measured_timings(float_rows, rows, _qdq_graph())}
    assert timings["conv"].float_ms == 1.0 and timings["conv"].int8_ms == pytest.approx(2.7)
    assert timings["conv"].nodes == ["conv"] and timings["conv"].slower      # 2.7x and >= 2 % of 10.3 ms
    assert not timings["conv2"].slower     # 1.04x: within the margin
    assert not timings["conv3"].slower and timings["conv3"].saved_ms == pytest.approx(0.7)
