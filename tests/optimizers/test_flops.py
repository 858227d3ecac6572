"""FLOPs (optimizers.flops): per operator, profiler rows (fused ones too) mapped back to graph nodes,
and the profiler's shape strings."""

from __future__ import annotations

import pytest

from optimizers.flops import graph_flops, node_flops, parse_shape_strings
from tests import models


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
