"""int8-measured from Python: in-process profiles of a real detector's float and INT8 files, the INT8 rows
mapped back to the float layers, and the layers measured slower kept float in the result."""

from __future__ import annotations

import onnx
import pytest

from optimizers import MeasuredPrecisionOptimizer, Profiler, Quantizer, evaluate
from optimizers.measured_precision import SLOWER_MARGIN, least_disturbed, profile_rows


@pytest.fixture(scope="module")
def yolo():
    from controller.sources import onnx_source

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
