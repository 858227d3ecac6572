"""The tensor codec of the wire contract: numpy arrays to and from agent.proto's Tensor message
(raw little-endian C-order bytes). Used by the agent's servicer and the controller's client."""

from __future__ import annotations

import numpy as np

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
