# aios — `make run` starts the shell, `make test` runs the whole suite.
# Both create .venv from the system python3 and install everything, once:
# each step leaves a stamp file and is skipped while its inputs are unchanged.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.16
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test lint bench snapshots install clean

run: install
	$(BIN)/aios

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/aios --local bench --seed 0

snapshots: install
	$(BIN)/python -m pytest --snapshot-update -m snapshot

install: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama-cpp-python ships no wheels: pip builds it from source (minutes). Its own
# stamp keeps a change to pyproject.toml from rebuilding it.
$(VENV)/.llama-$(LLAMA_VERSION): | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet "llama-cpp-python[server]==$(LLAMA_VERSION)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.llama-$(LLAMA_VERSION)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
