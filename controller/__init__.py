"""farmctl: the controller that builds candidates, ships them to farm-agents and compares the results.

The public Python API, importable from here wherever the module that defines it lives:

    from controller import bench, profile, MeasureSettings, LocalAgent, optimize, Constraints, run_nas

Names are imported lazily, so `import controller` stays cheap (no torch, no onnx)."""

from __future__ import annotations

import agent  # noqa: F401  (turns gRPC's fork handlers off before grpc is imported; see agent/__init__.py)
from core.lazy import lazy_exports
from optimizers import on_device

_EXPORTS = {
    "bench": "controller.measure.api",
    "profile": "controller.measure.api",
    "BenchResult": "controller.measure.api",
    "ProfileResult": "controller.measure.api",
    "default_store_path": "controller.measure.api",
    "profile_for_optimizers": "controller.measure.api",
    "MeasureSettings": "controller.measure.settings",
    "LocalAgent": "controller.fleet.local",
    "AgentClient": "controller.fleet.client",
    "TLSFiles": "controller.fleet.client",
    "ResultsStore": "controller.measure.store",
    "StoreError": "controller.measure.store",
    "compare_runs": "controller.measure.compare",
    "Comparison": "controller.measure.compare",
    "show_run": "controller.measure.show",
    "RunView": "controller.measure.show",
    "optimize": "controller.optimization.api",
    "OptimizeResult": "controller.optimization.results",
    "DeviceResult": "controller.optimization.results",
    "Constraints": "controller.optimization.constraints",
    "run_nas": "controller.optimization.nas",
    "farm_latency_table": "controller.optimization.nas",
    "example_model": "controller.measure.examples",
    "FarmError": "controller.errors",
    "ModelError": "controller.errors",
    "DeviceError": "controller.errors",
    "AgentUnavailable": "controller.errors",
    "JobFailed": "controller.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _profile_on_farm(request: on_device.FarmProfileRequest):
    return __getattr__("profile_for_optimizers")(request)


on_device.register_farm(_profile_on_farm)  # optimizers' Profiler(...).profile(device=NAME) runs on the farm
