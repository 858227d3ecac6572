"""farm-agent: the device daemon that receives models and measures them on its own hardware."""

__version__ = "0.1.0"


def child_env() -> dict[str, str]:
    """os.environ with this source tree first on PYTHONPATH, for `python -m agent...` children."""
    import os
    from pathlib import Path

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
