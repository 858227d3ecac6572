"""Tiny ONNX models built in code for the tests (no downloads, each a few KB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def conv_model(path: Path, batch: int | str = 1, size: int | str = 32) -> Path:
    """Conv(3->8, 3x3) + Relu + GlobalAveragePool + Flatten + Gemm(8->4); dims may be symbolic."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "fc.w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "fc.b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "tiny_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def unknown_op_model(path: Path) -> Path:
    """A valid ONNX file whose only node is an operator nobody implements."""
    node = helper.make_node("FrobnicateTensor", ["x"], ["y"], name="mystery", domain="com.example.nonexistent")
    graph = helper.make_graph([node], "unknown_op",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example.nonexistent", 1)])
    return _save(model, path)


def memory_hog_model(path: Path, gib: float = 1.5) -> Path:
    """Materialises a gib-sized float tensor per run (ConstantOfShape), then sums it."""
    n = int(gib * 2**30 / 4)
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("ReduceSum", ["s"], ["one"], name="one", keepdims=1),
             helper.make_node("Mul", ["one", "n"], ["count"], name="count"),
             helper.make_node("ConstantOfShape", ["count"], ["big"], name="big",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("ReduceSum", ["big"], ["y"], name="sum", keepdims=0)]
    graph = helper.make_graph(nodes, "memory_hog",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                              [numpy_helper.from_array(np.array([n], np.int64), "n")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def random_bytes(path: Path, size: int = 4096) -> Path:
    """A file of random bytes named .onnx."""
    path.write_bytes(np.random.default_rng(1).bytes(size))
    return path


def truncated(src: Path, path: Path) -> Path:
    """The first half of a valid model."""
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def external_data_model(src: Path, path: Path) -> Path:
    """A copy of src whose weights live in a side file (as torch.onnx.export(dynamo=True) writes by default)."""
    model = onnx.load(str(src))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data", size_threshold=0)
    return path


def probability_map_model(path: Path, size: int = 32) -> Path:
    """A dense "detector": Conv(1->8) + Relu + Conv(8->1) then Relu(y - 1) clipped to [0, 1]: a probability
    map that is exactly zero wherever nothing is detected (an all-zero input gives an all-zero map)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.abs(rng.standard_normal((8, 1, 3, 3))).astype(np.float32) * 0.5, "w1"),
             numpy_helper.from_array(np.abs(rng.standard_normal((1, 8, 3, 3))).astype(np.float32) * 0.2, "w2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Sub", ["c2", "one"], ["s"], name="threshold"),
             helper.make_node("Clip", ["s", "zero", "one"], ["map"], name="clip")]
    graph = helper.make_graph(nodes, "probability_map",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])],
                              [helper.make_tensor_value_info("map", TensorProto.FLOAT, [1, 1, size, size])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def blob_images(count: int, size: int = 32, empty_every: int = 2, seed: int = 0) -> np.ndarray:
    """[count, 1, size, size] images: every `empty_every`-th one all zeros (nothing to detect), the others
    bright square blobs on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.zeros((count, 1, size, size), np.float32)
    for i in range(count):
        if i % empty_every == 0:
            continue
        r, c, w = rng.integers(2, size // 2), rng.integers(2, size // 2), rng.integers(4, size // 3)
        x[i, 0, r:r + w, c:c + w] = rng.uniform(1.0, 2.0)
    return x


def tiny_bert(path: Path) -> Path:
    """A `transformers` BERT from a small config (random weights, no download), exported as users export
    them: two int64 inputs `input_ids` and `attention_mask` with dynamic_axes {0: 'batch', 1: 'sequence'},
    output the last hidden state [batch, sequence, 32]."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    bert = BertModel(config).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((1, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(Hidden(), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["hidden"], dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                                                 "hidden": axes}, opset_version=17, dynamo=False)
    return path


def gemm_stack(path: Path, width: int = 512, layers: int = 4, batch: int | str = "batch") -> Path:
    """`layers` x (MatMul width x width + Add + Relu), input x [batch, width]: large enough that INT8 runs
    measurably faster than float on x86 and ARM CPUs."""
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "x"
    for i in range(layers):
        inits += [numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32),
                                          f"w{i}"),
                  numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"bias{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}")]
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "gemm_stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [batch, width])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
