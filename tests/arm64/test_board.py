"""The emulated board itself: an aarch64 Debian reachable over SSH as a non-root user, whose Python makes
venvs and installs the agent's aarch64 wheels (ONNX Runtime, gRPC) and runs them under qemu."""

from __future__ import annotations

import time

from tests.arm64.board import TIMINGS, run_on


def test_the_board_is_aarch64_over_ssh_as_a_plain_user(board_ssh):
    rc, out, err = run_on(board_ssh, "uname -m; id -un; id -u; python3 -c 'import platform; print(platform.machine())'")
    assert rc == 0, err
    arch, user, uid, py_arch = out.split()
    assert (arch, py_arch) == ("aarch64", "aarch64")
    assert user == "pi" and uid != "0"
    # pi has passwordless sudo as on a Pi, but setuid binaries only work when the qemu-aarch64 binfmt entry
    # has the 'C' (credentials) flag, which Debian's has not; so nothing may rely on sudo (deploy does not)
    rc, out, err = run_on(board_ssh, "sudo -n id -u")
    assert (rc, out.strip()) == (0, "0") or "effective uid is not 0" in err, (rc, out, err)


def test_a_venv_installs_and_imports_onnxruntime_and_grpcio_for_aarch64(board_ssh):
    venv = "/tmp/edgefarm-wheel-check"
    rc, _, err = run_on(board_ssh, f"rm -rf {venv} && python3 -m venv {venv}")
    assert rc == 0, err
    t0 = time.monotonic()
    rc, out, err = run_on(board_ssh, f"{venv}/bin/python -m pip install --quiet onnxruntime grpcio")
    TIMINGS["pip install onnxruntime grpcio (venv on the board)"] = time.monotonic() - t0
    assert rc == 0, (out + err)[-2000:]
    check = ("import grpc, numpy, onnxruntime as ort, platform; "
             "print(platform.machine(), ort.__version__, grpc.__version__, ort.get_available_providers()[-1])")
    t0 = time.monotonic()
    rc, out, err = run_on(board_ssh, f"{venv}/bin/python -c '{check}'")
    TIMINGS["import onnxruntime, grpc under emulation"] = time.monotonic() - t0
    assert rc == 0, err[-2000:]
    machine, ort_version, _, provider = out.split()
    assert machine == "aarch64" and provider == "CPUExecutionProvider"
    assert tuple(int(x) for x in ort_version.split(".")[:2]) >= (1, 17)
    run_on(board_ssh, f"rm -rf {venv}")
