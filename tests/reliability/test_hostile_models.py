"""Issue: a model whose initializer named another cached model as its external data read that model's
bytes. Now the agent never reads external data, and says so in one sentence."""

from __future__ import annotations

import hashlib

import numpy as np
from onnx import TensorProto, helper

from protos import agent_pb2 as pb


def _sibling_reader(victim_digest: str, length: int, path) -> None:
    w = TensorProto(name="w", data_type=TensorProto.UINT8, dims=[length])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", victim_digest), ("offset", "0"), ("length", str(length))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [length])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "thief", [x],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [length])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def test_a_model_cannot_read_another_cached_model(start_agent, conv_onnx, tmp_path):
    client, agent = start_agent()
    victim = client.ensure_model(conv_onnx).digest
    assert victim == hashlib.sha256(conv_onnx.read_bytes()).hexdigest()
    thief = tmp_path / "thief.onnx"
    _sibling_reader(victim, 64, thief)
    digest = client.ensure_model(thief).digest
    x = np.zeros(64, np.uint8)
    request = pb.RunRequest(kind=pb.EVALUATE, model_digest=digest,
                            inputs=[pb.Tensor(name="x", dtype="uint8", shape=[64], data=x.tobytes())])
    events = list(client.run(request))
    assert not any(e.WhichOneof("event") == "outputs" for e in events)
    error = events[-1].error
    assert pb.ErrorCode.Name(error.code) == "INVALID_MODEL"
    assert "external data" in error.message and "self-contained" in error.message
    assert str(agent.cache_dir) not in error.message      # no cache paths in what a client reads
    assert "Traceback" not in agent.log_path.read_text()


def test_bad_digests_are_one_sentence(start_agent):
    client, agent = start_agent()
    for digest, words in (("../x", "is not a model digest"), ("", "names no model"),
                          ("a" * 64 + "\n", "is not a model digest")):
        events = list(client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest)))
        assert pb.ErrorCode.Name(events[-1].error.code) == "INVALID_INPUT" and words in events[-1].error.message
    assert "Traceback" not in agent.log_path.read_text()
