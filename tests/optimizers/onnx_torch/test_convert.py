"""The conversion of real ONNX exports to PyTorch gives their outputs, and what it cannot take is named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from optimizers.data.feeds import ImagePreprocess
from optimizers.errors import DataMismatch
from optimizers.onnx_torch.convert import MAX_RELATIVE_ERROR, ConversionError, convert_onnx, output_error
from tests.optimizers.onnx_torch.conftest import YOLO_SHAPE, photos_for


def test_yolov8n_converts_exactly_on_photos(yolov8n, yolo_photos):
    converted = convert_onnx(yolov8n, {"images": YOLO_SHAPE}, yolo_photos.feeds[:4])
    assert converted.input_names == ["images"] and converted.output_names == ["output0"]
    assert converted.dynamic_dims == {"images": [0, 2, 3]}
    assert converted.max_error <= MAX_RELATIVE_ERROR
    assert max(output_error(converted, f) for f in yolo_photos.feeds[4:8]) <= MAX_RELATIVE_ERROR


def test_ppocr_det_opset12_converts_exactly(ppocr, photos):
    data = photos_for(ppocr, photos, [1, 3, 320, 320], ImagePreprocess())
    converted = convert_onnx(ppocr, {"x": [1, 3, 320, 320]}, data.feeds[:4])
    assert converted.max_error <= MAX_RELATIVE_ERROR


def test_transformers_resnet_converts_exactly(resnet):
    converted = convert_onnx(resnet, {"pixel_values": [1, 3, 64, 64]})
    assert converted.max_error <= MAX_RELATIVE_ERROR
    assert converted.output_names == ["logits"]


def _with_hardmax(path):
    """A Conv followed by Hardmax: valid ONNX that ONNX Runtime runs and onnx2torch has no converter for."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.ones(108, np.float32).tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Hardmax", ["c"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "hardmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_op_the_converter_lacks_is_named(tmp_path):
    with pytest.raises(ConversionError) as exc:
        convert_onnx(_with_hardmax(tmp_path / "hardmax.onnx"), {"x": [1, 3, 8, 8]})
    assert "Hardmax" in str(exc.value) and "\n" not in str(exc.value)


def test_an_input_without_batch_dimension_gets_one_sentence(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["w", "x"], ["y"])], "nobatch",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    path = tmp_path / "nobatch.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ConversionError, match="batch dimension"):
        convert_onnx(path)


def test_a_dynamic_input_without_a_shape_says_how_to_fix_it(yolov8n):
    with pytest.raises(DataMismatch, match="--input-shape images="):
        convert_onnx(yolov8n)
