# One command each: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install install-dev run test lint bench bench-semantic clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/genai-api serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check genai_api tests bench
	$(BIN)/mypy genai_api

bench: install-dev
	$(BIN)/python -m bench.run

# Precision and hit rate of semantic hits per threshold, on the labelled pairs of
# bench/semantic, with two local embedding models (offline).
bench-semantic: install-dev
	$(BIN)/python -m bench.semantic.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
