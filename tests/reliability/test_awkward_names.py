"""Issue (D7): EVALUATE of a model whose input is named `file` failed with gRPC UNKNOWN (`savez() got
multiple values for argument 'file'`), a traceback in the agent's log and a job counted as cancelled; an
input named `allow_pickle` was refused as missing. Now arrays travel under any name."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from protos import agent_pb2 as pb
from protos.codec import array_to_tensor, tensor_to_array


def _add_model(path, a: str, b: str, out: str):
    graph = helper.make_graph([helper.make_node("Add", [a, b], [out])], "names",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in (a, b)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_inputs_and_outputs_named_like_savez_arguments(start_agent, tmp_path):
    client, agent = start_agent()
    model = _add_model(tmp_path / "names.onnx", "file", "allow_pickle", "file_out")
    odd = _add_model(tmp_path / "odd.onnx", "x", "y", "file")          # an output named file too
    a, b = np.arange(4, dtype=np.float32)[None], np.ones((1, 4), np.float32)
    for path, names, out in ((model, ("file", "allow_pickle"), "file_out"), (odd, ("x", "y"), "file")):
        digest = client.ensure_model(path).digest
        events = list(client.run(pb.RunRequest(kind=pb.EVALUATE, model_digest=digest, inputs=[
            array_to_tensor(names[0], a), array_to_tensor(names[1], b)])))
        outputs = next(e.outputs for e in events if e.WhichOneof("event") == "outputs")
        got = {t.name: tensor_to_array(t) for t in outputs.tensors}
        assert list(got) == [out] and np.array_equal(got[out], a + b)
    assert "Traceback" not in agent.log_path.read_text()
