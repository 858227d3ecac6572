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
