"""The codec of the wire contract: numpy arrays to and from agent.proto's Tensor message (raw
little-endian C-order bytes), and messages as plain dicts. Used by the agent's servicer and the
controller."""

from __future__ import annotations

import numpy as np
from google.protobuf import json_format

from protos import agent_pb2 as pb


def tensor_to_array(t: pb.Tensor) -> np.ndarray:
    """Decode a Tensor message (raw little-endian C-order bytes)."""
    dtype = np.dtype(t.dtype).newbyteorder("<")
    return np.frombuffer(t.data, dtype=dtype).reshape(tuple(t.shape)).astype(dtype.newbyteorder("="))


def array_to_tensor(name: str, a: np.ndarray) -> pb.Tensor:
    """Encode a numpy array as a Tensor message."""
    a = np.ascontiguousarray(a)
    return pb.Tensor(name=name, dtype=a.dtype.name, shape=list(a.shape),
                     data=a.astype(a.dtype.newbyteorder("<")).tobytes())


def to_dict(msg) -> dict:
    """A protobuf message as a plain dict with the proto's field names."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
