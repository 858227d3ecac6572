"""The one door from the optimizers to where models run: this CPU through the agent's own ONNX Runtime
backend (the same session settings and profile parser as a farm-agent), and farm devices through the
controller. The optimizers never import the controller: it registers its farm profiler here when it is
imported (`import controller`), and a farm device asked for without it gets a sentence saying so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import JobError
from optimizers.errors import OptimizerError


@dataclass
class FarmProfileRequest:
    """What a farm profile needs: the model file, the device, and how to run it there."""

    path: Path
    device: str
    threads: int
    warmup: int
    iterations: int
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    inventory: Path | None = None
    store: object = None


_farm: list[Callable] = []


def register_farm(profile: Callable[[FarmProfileRequest], object]) -> None:
    """The controller's farm profiler: takes a FarmProfileRequest, returns its ProfileResult."""
    _farm[:] = [profile]


def profile_on_farm(request: FarmProfileRequest):
    if not _farm:
        raise OptimizerError(f"device={request.device!r} is a farm device, and profiling there needs the "
                             "controller: `import controller` first (or use device='cpu' for this CPU)")
    return _farm[0](request)


def profile_here(path: Path, threads: int, feed: dict[str, np.ndarray], warmup: int, iterations: int,
                 profile_dir: Path) -> tuple[list[dict], float, int]:
    """Profile on this CPU in process: the agent's ONNX Runtime backend, its rows, total ms and run count."""
    from agent.backends.onnxruntime import OnnxRuntimeBackend  # the runtime only when profiling here

    backend = OnnxRuntimeBackend()
    try:
        backend.load(path, threads, profile_dir=profile_dir)
        for _ in range(warmup + iterations):
            backend.run(feed)
        return backend.layer_profile(skip_runs=warmup)
    except JobError as exc:
        raise OptimizerError(exc.message) from None
    except Exception as exc:  # ORT's exception types from run()
        raise OptimizerError(f"onnxruntime could not run the model: {str(exc).strip()[:300]}") from None
