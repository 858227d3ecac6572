"""FLOPs (optimizers.graph.flops): per operator, profiler rows (fused ones too) mapped back to graph nodes,
and the profiler's shape strings."""

from __future__ import annotations

import pytest

from optimizers.graph.flops import format_flops, format_total, graph_flops, node_flops, parse_shape_strings
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
    ("ReorderOutput", [[1, 8, 4, 4]], [[1, 8, 4, 4]], {}, 0),      # data movement: no FLOPs, known
    ("Conv", [None, None], [None], {}, None),                        # shapes unknown: FLOPs unknown
    ("Relu", [[1, 10]], [None], {}, None),
    # outside the tables: unknown, not 0
    ("Attention", [[1, 128, 768], [768, 2304]], [[1, 128, 768]], {}, None),
    ("LSTM", [[10, 1, 64], [1, 256, 64]], [[10, 1, 1, 64]], {}, None),
    ("GRU", [[10, 1, 64]], [[10, 1, 1, 64]], {}, None),
    ("Einsum", [[4, 8], [8, 8]], [[4, 8]], {}, None),
    ("Resize", [[1, 3, 8, 8]], [[1, 3, 16, 16]], {}, None),
])
def test_node_flops(op, ins, outs, attrs, flops):
    assert node_flops(op, ins, outs, attrs) == flops


def test_fused_rows_map_back_to_graph_nodes(model_dir):
    from optimizers.graph.flops import row_flops

    graph = graph_flops(models.conv_model(model_dir / "fused.onnx"), {})
    fused = {"name": "r_nchwc", "op_type": "Conv", "input_shapes": [], "output_shapes": []}
    assert row_flops(fused, graph) == (graph.nodes["conv"].flops + graph.nodes["relu"].flops, ["conv", "relu"])
    # aarch64: ORT runs Conv+Relu as NhwcFusedConv named after the Conv
    arm = {"name": "conv_token_1", "op_type": "NhwcFusedConv", "input_shapes": [], "output_shapes": []}
    assert row_flops(arm, graph) == (graph.nodes["conv"].flops + graph.nodes["relu"].flops, ["conv", "relu"])
    plain = {"name": "fc", "op_type": "Gemm"}
    assert row_flops(plain, graph) == (2 * 8 * 4, ["fc"])
    reorder = {"name": "ReorderOutput", "op_type": "ReorderOutput", "output_shapes": ["float[1,8,32,32]"]}
    assert row_flops(reorder, graph) == (0, [])
    attention = {"name": "Attention_0", "op_type": "Attention", "output_shapes": ["float[1,128,768]"]}
    assert row_flops(attention, graph) == (None, [])
    relu_only = {"name": "x_nhwc", "op_type": "Relu", "output_shapes": ["float[1,10]"]}
    assert row_flops(relu_only, graph) == (10, [])  # no producer: computed from the reported shapes


def test_shape_strings_round_trip():
    assert parse_shape_strings(["float[1,3,224,224]", "int64[]", "weird"]) == [[1, 3, 224, 224], [], None]


def test_unknown_ops_make_the_total_a_lower_bound(model_dir):
    from onnx import TensorProto, helper

    graph = graph_flops(models.conv_model(model_dir / "known.onnx"), {})
    assert graph.unknown == [] and format_total(graph.total, len(graph.unknown)) == f"{graph.total / 1e9:.3f} GFLOPs"
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Einsum", ["r", "r"], ["e"], name="mix", equation="ij,jk->ik"),
             helper.make_node("Resize", ["e", "", "scales"], ["y"], name="up")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [helper.make_tensor("scales", TensorProto.FLOAT, [2], [2.0, 2.0])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    flops = graph_flops(model, {})
    assert flops.nodes["relu"].flops == 16 and sorted(flops.unknown) == ["mix", "up"] and flops.total == 16
    assert format_total(flops.total, 2, scale=1, unit="FLOPs", digits=0) == "≥ 16 FLOPs (2 ops unknown)"
    assert format_total(0, 1) == "n/a GFLOPs (1 op unknown)"
    assert format_flops(None) == "n/a" and format_flops(2_500_000) == "2.50"
