"""Issue: an upload header declaring the cache's whole size, followed by one byte, evicted every cached
model before any byte was checked. Now nothing is evicted until a complete, verified model commits."""

from __future__ import annotations

import hashlib

import grpc

from protos import agent_pb2 as pb
from tests import models


def test_a_bogus_upload_evicts_nothing(start_agent, tmp_path):
    client, _ = start_agent("--cache-max-mb", "8")
    kept = []
    for i in range(2):
        path = models.conv_model(tmp_path / f"m{i}.onnx", size=32 + i)
        kept.append(client.ensure_model(path).digest)
    assert client.missing(kept) == []

    def bogus():
        yield pb.UploadChunk(header=pb.UploadHeader(digest=hashlib.sha256(b"x").hexdigest(), size_bytes=8 * 2**20))
        yield pb.UploadChunk(data=b"x")

    try:
        client.stub.UploadModel(bogus(), timeout=30, metadata=client._metadata)
        raise AssertionError("the bogus upload was accepted")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "ended after 1 of 8388608 bytes" in exc.details()
    assert client.missing(kept) == []
