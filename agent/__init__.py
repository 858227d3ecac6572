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
