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
