# `make help` lists the commands. Each one creates .venv and installs the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A pinned torch first: on CPU-only machines it is the local CPU wheel, and the package's own
# `torch>=...` bound is then satisfied, so pip never pulls GBs of CUDA packages. Override on GPU hosts.
TORCH ?= torch==2.13.0
ARGS ?=

.PHONY: help install train test test-all lint format bench

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed  ## create .venv and install torch, the package and dev tools

train: install  ## the main job: make train ARGS="task=sentiment"
	$(BIN)/python scripts/train.py $(ARGS)

test: install  ## the default suite, without the tests marked slow (ARGS="-m slow": only those)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-all: install  ## every test, the slow ones included
	$(BIN)/python -m pytest $(ARGS)

lint: install  ## ruff lint and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: install  ## model throughput, fp32 against bf16
	$(BIN)/python benchmarks/model_throughput.py
