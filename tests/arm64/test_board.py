"""The emulated board itself: an aarch64 Debian reachable over SSH as a non-root user. (That its Python
installs and runs the agent's aarch64 wheels is proved by the deploy in test_emulated_pi.py, which installs
them and then measures through them; a separate pip install here cost CI 2.5-5.5 minutes for nothing more.)"""

from __future__ import annotations

from tests.arm64.board import run_on


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
