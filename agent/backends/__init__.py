"""Inference backends, imported lazily so an agent imports only the runtime it has."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from agent.errors import JobError
from core.inputs import InputSpec

__all__ = ["Backend", "InputSpec", "available_backends", "backend_class"]


class Backend(ABC):
    """A runtime that loads a model file, runs it on numpy inputs, and profiles it per layer."""

    name: str = ""

    @staticmethod
    @abstractmethod
    def version() -> str:
        """Version of the runtime library."""

    @staticmethod
    def providers() -> list[str]:
        """Execution providers / delegates this runtime can use here."""
        return []

    @abstractmethod
    def load(self, path: Path, threads: int, profile_dir: Path | None = None,
             input_shapes: dict[str, list[int]] | None = None) -> None:
        """Build the session/interpreter; with profile_dir, per-layer profiling is switched on. input_shapes
        (--input-shape) is for runtimes that fix dynamic dimensions when they build (TensorRT's profiles);
        the others take shapes per run."""

    @abstractmethod
    def inputs(self) -> list[InputSpec]:
        """The model's inputs."""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One inference; this call alone is inside the timed region."""

    @abstractmethod
    def output_names(self) -> list[str]:
        """Names of the model's outputs, in the order run() returns them."""

    @abstractmethod
    def layer_profile(self, skip_runs: int) -> tuple[list[dict], float, int]:
        """Per-layer rows (mean per inference), total ms per inference, and runs profiled."""

    def profile_trace(self, skip_runs: int, max_runs: int) -> dict | None:
        """After layer_profile: the profile as a Chrome trace (agent.trace) holding at most max_runs measured
        runs, or None where the runtime gives none."""
        return None


# name -> "module:Class"; modules are imported only when a backend is asked for.
BACKENDS = {
    "onnxruntime": "agent.backends.onnxruntime:OnnxRuntimeBackend",
    "tflite": "agent.backends.tflite:LiteRTBackend",
    "tensorrt": "agent.backends.tensorrt:TensorRTBackend",
}


# what to install for each backend, said when it is missing
INSTALL = {"onnxruntime": "pip install onnxruntime",
           "tflite": "pip install 'edgefarm[tflite]'",
           "tensorrt": "JetPack's TensorRT (its Python bindings, or trtexec in /usr/src/tensorrt/bin), or on x86 "
                       "pip install tensorrt-cu12"}


def backend_class(name: str) -> type[Backend]:
    """The Backend class registered under name, imported on demand."""
    if name not in BACKENDS:
        raise JobError("BACKEND_UNAVAILABLE",
                       f"unknown backend '{name}'; this agent knows: {', '.join(sorted(BACKENDS))}")
    module, _, cls = BACKENDS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise JobError("BACKEND_UNAVAILABLE",
                       f"backend '{name}' is not installed on this device ({exc}); install it "
                       f"({INSTALL[name]}) and restart farm-agent") from exc


def available_backends() -> list[dict]:
    """The backends importable on this device, with versions and providers."""
    found = []
    for name in BACKENDS:
        try:
            cls = backend_class(name)
            found.append({"name": name, "version": cls.version(), "providers": cls.providers()})
        except Exception:  # noqa: BLE001 - a runtime that is missing or broken here is simply not offered
            continue
    return found
