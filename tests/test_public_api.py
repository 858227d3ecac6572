"""Every name the packages' lazy tables promise (`from controller import X`, `from optimizers import X`)
imports, and an unknown name is a plain AttributeError."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["controller", "optimizers"])
def test_every_public_name_imports(package):
    module = importlib.import_module(package)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        module.no_such_name
