"""Small ONNX graphs written for the optimizer tests: each holds the pattern a technique targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
OUTLIER = 300.0    # mlp(): the outlier channels' weights, times the others'


def _model(nodes, inputs, outputs, inits, path: Path, opset: int = 17, name: str = "g") -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 15 else 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _arr(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def convnet(path: Path, opset: int = 11) -> Path:
    """x[1,3,32,32] -> Conv+BN+Relu -> Conv+BN+Clip(0,6) -> Conv+BN -> Add(residual) -> GAP -> Flatten
    -> Gemm+Relu -> Gemm: y[1,10]. Opset 11 by default, so per-channel QDQ needs an upgrade."""
    rng = np.random.default_rng(1)
    inits, nodes = [], []

    def conv_bn(i, x, cin, cout, act):
        inits.extend([numpy_helper.from_array(_arr(rng, cout, cin, 3, 3, scale=np.sqrt(2 / (cin * 9))), f"w{i}"),
                      numpy_helper.from_array(_arr(rng, cout, scale=0.1), f"b{i}"),
                      numpy_helper.from_array(rng.uniform(0.5, 1.5, cout).astype(np.float32), f"g{i}"),
                      numpy_helper.from_array(_arr(rng, cout, scale=0.1), f"beta{i}"),
                      numpy_helper.from_array(_arr(rng, cout, scale=0.1), f"m{i}"),
                      numpy_helper.from_array(rng.uniform(0.5, 1.5, cout).astype(np.float32), f"v{i}")])
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}",
                                      kernel_shape=[3, 3], pads=[1] * 4))
        nodes.append(helper.make_node("BatchNormalization", [f"c{i}", f"g{i}", f"beta{i}", f"m{i}", f"v{i}"],
                                      [f"bn{i}"], name=f"bn{i}", epsilon=1e-5))
        if act == "relu":
            nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"a{i}"], name=f"relu{i}"))
            return f"a{i}"
        if act == "relu6":
            inits.extend([numpy_helper.from_array(np.array(0, np.float32), f"lo{i}"),
                          numpy_helper.from_array(np.array(6, np.float32), f"hi{i}")])
            nodes.append(helper.make_node("Clip", [f"bn{i}", f"lo{i}", f"hi{i}"], [f"a{i}"], name=f"relu6_{i}"))
            return f"a{i}"
        return f"bn{i}"

    a = conv_bn(0, "x", 3, 16, "relu")
    b = conv_bn(1, a, 16, 16, "relu6")
    c = conv_bn(2, b, 16, 16, None)
    nodes.append(helper.make_node("Add", [a, c], ["res"], name="residual"))
    nodes.append(helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits.extend([numpy_helper.from_array(_arr(rng, 32, 16, scale=0.3), "fc1.w"),
                  numpy_helper.from_array(_arr(rng, 32, scale=0.1), "fc1.b"),
                  numpy_helper.from_array(_arr(rng, 10, 32, scale=0.3), "fc2.w"),
                  numpy_helper.from_array(_arr(rng, 10, scale=0.1), "fc2.b")])
    nodes.append(helper.make_node("Gemm", ["flat", "fc1.w", "fc1.b"], ["h"], name="fc1", transB=1))
    nodes.append(helper.make_node("Relu", ["h"], ["hr"], name="fc1_relu"))
    nodes.append(helper.make_node("Gemm", ["hr", "fc2.w", "fc2.b"], ["y"], name="fc2", transB=1))
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 32, 32])],
                  [helper.make_tensor_value_info("y", F, [1, 10])], inits, path, opset=opset, name="convnet")


def mlp(path: Path, hidden: int = 256, outlier_layer: str | None = "fc2", compensate: bool = False) -> Path:
    """x[1,64] -> MatMul+Add+Relu x3 -> y[1,16], dynamic batch. `outlier_layer` gets a few huge
    weights, so INT8 per-tensor activations after it lose precision (a layer sensitive to quantization).
    `compensate`: the next layer divides those two channels back by the same factor, so the float output
    owes as much to the small channels as to the large ones, and an INT8 grid spanning the large ones (a step
    wider than most small values) provably loses most of the output."""
    rng = np.random.default_rng(2)
    dims = [64, hidden, hidden, hidden, 16]
    inits, nodes, x = [], [], "x"
    for i in range(4):
        name = f"fc{i}"
        w = _arr(rng, dims[i], dims[i + 1], scale=1 / np.sqrt(dims[i]))
        if name == outlier_layer:
            w[:, :2] *= OUTLIER  # two output channels with a range 300x the others
        if compensate and outlier_layer and name == f"fc{int(outlier_layer[2:]) + 1}":
            w[:2, :] /= OUTLIER
        inits.extend([numpy_helper.from_array(w, f"{name}.w"),
                      numpy_helper.from_array(_arr(rng, dims[i + 1], scale=0.05), f"{name}.b")])
        nodes.append(helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.mm"], name=name))
        nodes.append(helper.make_node("Add", [f"{name}.mm", f"{name}.b"], [f"{name}.out"], name=f"{name}_bias"))
        x = f"{name}.out"
        if i < 3:
            nodes.append(helper.make_node("Relu", [x], [f"{name}.act"], name=f"{name}_relu"))
            x = f"{name}.act"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 64])],
                  [helper.make_tensor_value_info("y", F, ["batch", 16])], inits, path, name="mlp")


def masked_softmax(path: Path) -> Path:
    """x[batch,16] -> MatMul -> Where(keep, scores, -inf) -> Softmax -> MatMul -> y[batch,8]: scores masked
    with -inf by a Where (not an Add of a large negative constant, so not an attention mask to the
    protection rules): the Where's output has an unbounded calibrated range."""
    rng = np.random.default_rng(3)
    keep = np.ones((1, 16), bool)
    keep[0, 10:] = False
    inits = [numpy_helper.from_array(_arr(rng, 16, 16, scale=0.25), "w1"),
             numpy_helper.from_array(keep, "keep"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "ninf"),
             numpy_helper.from_array(_arr(rng, 16, 8, scale=0.25), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["scores"], name="scores"),
             helper.make_node("Where", ["keep", "scores", "ninf"], ["masked"], name="mask"),
             helper.make_node("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["probs", "w2"], ["y"], name="out")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 16])],
                  [helper.make_tensor_value_info("y", F, ["batch", 8])], inits, path, name="masked")


def integer_only(path: Path) -> Path:
    """No float weights at all: y = x + 1 on int64."""
    inits = [numpy_helper.from_array(np.array([1], np.int64), "one")]
    nodes = [helper.make_node("Add", ["x", "one"], ["y"], name="add")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 4])], inits, path)


def rewrite_graph(kind: str, path: Path) -> Path:
    """One graph per operator rewrite, holding exactly the pattern it rewrites."""
    rng = np.random.default_rng(3)
    x = helper.make_tensor_value_info("x", F, [2, 8, 16])
    out_shape = {"transpose_chain": [8, 16, 2], "reshape_chain": [2, 128]}.get(kind, [2, 8, 16])
    y = helper.make_tensor_value_info("y", F, out_shape)
    c = lambda v, n: numpy_helper.from_array(np.asarray(v, np.float32), n)  # noqa: E731
    if kind == "gelu":  # the erf GELU exactly as torch.onnx exports nn.GELU()
        inits = [c(np.sqrt(2.0), "sqrt2"), c(1.0, "one"), c(0.5, "half")]
        nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["y"])]
    elif kind == "swish":
        inits = []
        nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
                 helper.make_node("Relu", ["m"], ["y"])]
    elif kind == "hardswish":  # the three exported forms: x*clip(x+3,0,6)/6, x*HardSigmoid(x), x*(clip/6)
        inits = [c(3.0, "three"), c(0.0, "zero"), c(6.0, "six"), c(1 / 6, "sixth")]
        nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
                 helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("Div", ["m", "six"], ["h1"]),
                 helper.make_node("HardSigmoid", ["h1"], ["g"], alpha=1 / 6, beta=0.5),
                 helper.make_node("Mul", ["g", "h1"], ["h2"]),
                 helper.make_node("Add", ["h2", "three"], ["a3"]), helper.make_node("Clip", ["a3", "zero", "six"], ["c3"]),
                 helper.make_node("Mul", ["c3", "sixth"], ["s3"]), helper.make_node("Mul", ["h2", "s3"], ["y"])]
    elif kind == "div_to_mul":
        inits = [c(rng.uniform(1, 3, 16), "den")]
        nodes = [helper.make_node("Div", ["x", "den"], ["y"])]
    elif kind == "transpose_chain":  # one pair that cancels, one that merges
        inits = []
        nodes = [helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 1]),
                 helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 2, 1]),
                 helper.make_node("Relu", ["t2"], ["r"]),
                 helper.make_node("Transpose", ["r"], ["t3"], perm=[1, 0, 2]),
                 helper.make_node("Transpose", ["t3"], ["y"], perm=[0, 2, 1])]
    elif kind == "reshape_chain":
        inits = [numpy_helper.from_array(np.array([16, 16], np.int64), "s1"),
                 numpy_helper.from_array(np.array([2, -1], np.int64), "s2")]
        nodes = [helper.make_node("Reshape", ["x", "s1"], ["r1"]), helper.make_node("Reshape", ["r1", "s2"], ["i"]),
                 helper.make_node("Identity", ["i"], ["i2"]), helper.make_node("Relu", ["i2"], ["y"])]
    elif kind == "constant_folding":  # (w * 2 + 1) computed every run, and Shape of a static input
        inits = [c(rng.standard_normal(16), "w"), c(2.0, "two"), c(1.0, "one1")]
        nodes = [helper.make_node("Mul", ["w", "two"], ["w2"]), helper.make_node("Add", ["w2", "one1"], ["w3"]),
                 helper.make_node("Add", ["x", "w3"], ["xa"]),
                 helper.make_node("Shape", ["x"], ["shape"]),
                 helper.make_node("Reshape", ["xa", "shape"], ["y"])]
    else:
        raise ValueError(kind)
    for i, n in enumerate(nodes):
        n.name = f"{n.op_type}_{i}"
    return _model(nodes, [x], [y], inits, path, name=kind)


def op_counts(path) -> dict[str, int]:
    """{op_type: count} of a saved model."""
    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
