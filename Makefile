# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
# The demo installs only what it needs (edgefarm[optimize,examples,dashboard]); setup, test, bench and protos the dev
# extra and the test models, in the same venv (so `make test` after `make demo` adds to it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
# onnx2torch (the ONNX -> PyTorch converter that prunes ONNX models) requires torchvision, whose wheels do not
# load beside torch 2.13 and which it uses only for NMS/RoiAlign: installed without its dependencies (the
# ones it needs, onnx and torch, are there), pinned here because the lock resolves pyproject.toml only
ONNX2TORCH := onnx2torch==1.5.15
# TORCH_INDEX: a package index with torch's CPU build, for a machine without a local CPU wheel, where pip
# would otherwise fetch the multi-GB CUDA build, e.g. make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# LOCK: the pins every install takes (pip install -c), written by `make lock`; `make test-latest` empties it
LOCK   ?= constraints.txt
PIN    := $(if $(LOCK),-c $(LOCK))
# long quiet steps print a line every 8 s, so nothing looks hung
TALK   := $(PYTHON) scripts/heartbeat.py
# setuptools' 8-line notice on every editable install (a checkout is on the path: edgefarm is meant to be
# run from it) says nothing a user can act on
export PYTHONWARNINGS := ignore:Editable installation

.PHONY: setup demo test test-quick test-latest lock bench protos clean

setup: $(VENV)/.installed $(VENV)/share/edgefarm-models/.done $(VENV)/share/edgefarm-trt/.done

# the venv, a current pip and torch (the CPU build), first: the extras leave an installed torch as it is
$(VENV)/.torch:
	@echo "creating $(VENV) with $(TORCH) (CPU)$(if $(TORCH_INDEX), from $(TORCH_INDEX))"
	$(PYTHON) -m venv $(VENV)
	$(TALK) --label "upgrading pip" -- $(BIN)/python -m pip install --quiet --upgrade pip
	$(TALK) --label "installing $(TORCH) (CPU)" -- $(BIN)/python -m pip install --quiet $(TORCH) $(TORCH_INDEX:%=--index-url %)
	touch $@

# what the demo needs: the farm, torch and the techniques, the digits; no test tools, no test models
$(VENV)/.demo: pyproject.toml $(LOCK) $(VENV)/.torch
	@echo "installing edgefarm[optimize,examples,dashboard] into $(VENV)$(if $(LOCK), pinned by $(LOCK)) (first time: 3 to 7 min, 1.6 GB in all)"
	$(TALK) --label "installing edgefarm[optimize,examples,dashboard]" -- $(BIN)/python -m pip install --quiet $(PIN) -e '.[optimize,examples,dashboard]'
	$(BIN)/python -m pip install --quiet --no-deps $(ONNX2TORCH)
	touch $@

# everything: the dev extra has the demo's extras too, so the demo's stamp is touched with it
$(VENV)/.installed: pyproject.toml $(LOCK) $(VENV)/.torch
	@echo "installing edgefarm[dev] into $(VENV)$(if $(LOCK), pinned by $(LOCK)) (first time: 3 to 10 min, 2.0 GB in all)"
	$(TALK) --label "installing edgefarm[dev] and its dependencies" -- $(BIN)/python -m pip install --quiet $(PIN) -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(ONNX2TORCH)
	touch $@ $(VENV)/.demo

# real .tflite models (from the mediapipe wheel) and two detectors for the tests and benchmarks
$(VENV)/share/edgefarm-models/.done: $(VENV)/.installed scripts/fetch_models.py
	$(BIN)/python scripts/fetch_models.py
	touch $@

# TensorRT's Python bindings (8.6, 10.3, 11.4; unpacked, not installed) for the TensorRT backend's API test
$(VENV)/share/edgefarm-trt/.done: $(VENV)/.installed scripts/fetch_trt_bindings.py
	$(BIN)/python scripts/fetch_trt_bindings.py
	touch $@

demo: $(VENV)/.demo
	$(BIN)/farmctl devices
	$(BIN)/farmctl optimize --out edgefarm-optimize

# the whole suite, in parallel (pytest-xdist: -n auto; a module's tests share a worker: tests/conftest.py)
test: setup
	$(BIN)/python -m pytest -q -n auto --dist loadscope --no-loadscope-reorder

# the unit tests and one real agent round trip: everything not marked slow
test-quick: setup
	$(BIN)/python -m pytest -q -n auto --dist loadscope --no-loadscope-reorder -m "not slow"

# the suite on the newest releases PyPI serves today, in a venv of its own, without the lock: what the next
# `make lock` would bring. Not part of `make test` or CI.
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest LOCK=

# resolve pyproject.toml's dependencies again (pip's resolver) into constraints.txt and the agent's deploy pins
# (only the venv and packaging: an install pinned by the old lock may no longer resolve against pyproject.toml)
lock: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet packaging
	$(BIN)/python scripts/lock.py

# the emulated arm64 Raspberry Pi (scripts/emulated_pi.py, docs/arm64.md): root and qemu-user-static needed
.PHONY: test-arm64
test-arm64: setup
	$(BIN)/python -m pytest -q tests/arm64

bench: setup
	$(BIN)/python benchmarks/fidelity.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/optimize.py

protos: setup
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .venv-latest edgefarm-results.db* edgefarm-profile.png edgefarm-optimize
