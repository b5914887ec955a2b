# Two commands on a fresh machine: `make run` (the app, offline) and `make test`.
# Each creates .venv and installs what it needs from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run install install-dev test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install  ## start the web UI on the embedded procedural backend
	$(BIN)/python main.py

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy

test: lint typecheck  ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev  ## every benchmark, figures as ratios measured in one run each
	$(BIN)/python benchmarks/concurrency.py
	$(BIN)/python benchmarks/caching.py
	$(BIN)/python benchmarks/library.py
	$(BIN)/python benchmarks/chat.py
	$(BIN)/python benchmarks/content.py
	$(BIN)/python benchmarks/dialogue.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
