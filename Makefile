# One command each: `make run` (the embedded service), `make test` (the whole suite).
# Both create .venv and install the project first. TORCH overrides the torch requirement
# (a CUDA build on a GPU machine, e.g. TORCH=torch); the default is the CPU wheel 2.13.0.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
GANFORGE_DATA_DIR ?= $(abspath ../shared/datasets)
export GANFORGE_DATA_DIR

.PHONY: install run test lint bench
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[service,dev]'
	touch $@

run: install
	$(VENV)/bin/ganforge up

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/engine_throughput.py
