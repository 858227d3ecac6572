"""Packages whose public names are imported on first use: `import optimizers` or `import controller`
stays cheap (no torch, no onnx) while `from optimizers import Quantizer` still works."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level (__getattr__, __dir__) of `package`, whose name X lives in module exports[X]."""

    def get(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)   # imported once
        return value

    def names() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return get, names
