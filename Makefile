# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# long quiet steps print a line every 8 s, so nothing looks hung
TALK   := $(PYTHON) scripts/heartbeat.py

.PHONY: setup demo test bench protos clean

setup: $(VENV)/.installed $(VENV)/share/edgefarm-models/.done

$(VENV)/.installed: pyproject.toml
	@echo "setting up $(VENV) (first time only: about 3 min and 2.0 GB on 2 cores)"
	$(PYTHON) -m venv $(VENV)
	$(TALK) --label "upgrading pip" -- $(BIN)/python -m pip install --quiet --upgrade pip
	$(TALK) --label "installing torch 2.13.0 (CPU)" -- $(BIN)/python -m pip install --quiet torch==2.13.0
	$(TALK) --label "installing edgefarm and its dependencies" -- $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# real .tflite models (from the mediapipe wheel) for the LiteRT backend's tests and benchmark
$(VENV)/share/edgefarm-models/.done: $(VENV)/.installed scripts/fetch_models.py
	$(BIN)/python scripts/fetch_models.py
	touch $@

demo: setup
	$(BIN)/farmctl devices
	$(BIN)/farmctl optimize --out edgefarm-optimize

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/fidelity.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/optimize.py

protos: setup
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) edgefarm-results.db* edgefarm-profile.png edgefarm-optimize
