"""Issue: a full cache disk came back as UNKNOWN/INTERNAL with a 20-line traceback. Now it is
RESOURCE_EXHAUSTED and one sentence: 'cache disk full: N bytes free under DIR'."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from controller.errors import DeviceError


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_cache_disk_is_one_sentence(small_disk, tmp_path):
    from controller.fleet.local import LocalAgent

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal(600_000).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "big", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [600_000])], [w])
    model = tmp_path / "big.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    agent = LocalAgent(cache_dir=small_disk / "cache", name="tiny-disk", extra_args=["--cache-max-mb", "64"])
    client = agent.start()
    try:
        with pytest.raises(DeviceError, match=r"cache disk full: \d+ bytes free under .* needed"):
            client.ensure_model(model)
        assert "Traceback" not in agent.log_path.read_text()
        assert client.health()
    finally:
        agent.stop()


def _fill(folder, leave: int) -> None:
    """Fill the disk under folder up to `leave` free bytes."""
    free = shutil.disk_usage(folder).free
    if free > leave:
        (folder / "filler").write_bytes(b"\0" * (free - leave))


def test_a_full_disk_on_the_job_side_is_one_sentence(small_disk, tmp_path, conv_onnx):
    """Issue (D8): with the model cached, a job that cannot write its files gave UNKNOWN [Errno 28] with a
    traceback (EVALUATE) or `INTERNAL: runner failed: JSONDecodeError` and 20 lines of traceback (PROFILE)."""
    from controller.fleet.local import LocalAgent
    from protos import agent_pb2 as pb
    from protos.codec import array_to_tensor

    wide = tmp_path / "wide.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "wide",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 400_000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 400_000])])
    wide.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    agent = LocalAgent(cache_dir=small_disk / "cache", name="tiny-disk", extra_args=["--cache-max-mb", "64"])
    client = agent.start()
    try:
        digests = [client.ensure_model(m).digest for m in (wide, conv_onnx)]
        x = np.zeros((1, 400_000), np.float32)                     # 1.6 MB of inputs on a 1 MiB disk
        last = list(client.run(pb.RunRequest(kind=pb.EVALUATE, model_digest=digests[0],
                                             inputs=[array_to_tensor("x", x)])))[-1]
        assert last.WhichOneof("event") == "error" and "the agent's disk is full" in last.error.message
        _fill(small_disk, 4096)
        last = list(client.run(pb.RunRequest(kind=pb.PROFILE, model_digest=digests[1], settings=pb.MeasureSettings(
            warmup=1, profile_iterations=200, threads=1))))[-1]
        assert last.WhichOneof("event") == "error" and "the agent's disk is full" in last.error.message, last
        assert "Traceback" not in last.error.message and "Traceback" not in agent.log_path.read_text()
        assert client.health()
    finally:
        agent.stop()
