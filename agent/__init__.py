"""farm-agent: the device daemon that receives models and measures them on its own hardware."""

import os as _os

__version__ = "0.1.0"

# gRPC's fork handlers serve processes that fork and go on using gRPC in the child. Ours fork only to exec
# (the runner, an embedded agent, ssh tools), and with those handlers on, grpcio >= 1.81 can crash such a
# child between fork and exec (grpc/grpc#43055; seen in CI as "the local farm-agent exited at start: ...
# epoll_wait error: Bad file descriptor"). Off, before anything imports grpc; an explicit setting wins.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def child_env() -> dict[str, str]:
    """os.environ with this source tree first on PYTHONPATH, for `python -m agent...` children."""
    import os
    from pathlib import Path

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def die_with_parent(sig: int) -> None:
    """In a child between fork and exec (preexec_fn), Linux: receive `sig` when the parent dies, even by
    SIGKILL, so no child outlives it (an embedded agent its farmctl, a runner its agent). The signal is tied
    to the parent *thread* that forked, so fork from a thread that lives as long as the parent."""
    import os
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        parent = os.getppid()
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:   # the parent died before the request took hold
            os.kill(os.getpid(), sig)
