# Every target sets itself up: a fresh clone needs only Python 3.11 and make.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
# The install stamp is keyed on the dependency spec: editing pyproject.toml reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
XDIST := -n auto --dist loadfile
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup demo test test-fast test-slow lint bench docs coverage clean

help:
	@echo "make demo   set up, then run the whole flow on a simulated registry"
	@echo "make test   set up, then lint and run the test suite (on every core; slow tests apart)"
	@echo "make test-fast  the unit tests only (about a minute)"
	@echo "make test-slow  the tests marked slow (the whole demo, kill loops, each sandbox limit); CI runs them"
	@echo "make lint   ruff and mypy"
	@echo "make bench  benchmarks, each against its baseline (writes benchmarks/results.json)"
	@echo "make coverage  the suite with line coverage (coverage.json)"
	@echo "make docs   write docs/reference.md from the code (commands, options, policy keys)"

setup: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || { echo "Creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing dependencies into $(VENV) (first time: a few minutes) ..."
	@# torch first, pinned: it takes the local CPU build instead of a multi-GB CUDA download.
	@$(BIN)/pip install --quiet $(TORCH) $(PIP_QUIET)
	@$(BIN)/pip install --quiet -e '.[dev,dp-twin]' $(PIP_QUIET)
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(BIN)/research-kit demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	@# The layer rule of docs/architecture.md: an import against the flow fails here.
	$(BIN)/lint-imports --no-cache
	@# The suite on every core (a test file stays on one worker: its module fixtures are built once).
	$(BIN)/python -m pytest -m "not slow" $(XDIST)

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -m "not slow" $(XDIST)

test-slow: $(STAMP)
	@# The tests marked slow (the whole demo, every example study, each sandbox limit, the kill loop).
	$(BIN)/python -m pytest -m slow $(XDIST)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

coverage: $(STAMP)
	@# Line coverage of the whole suite (slow tests included), as a table and coverage.json.
	$(BIN)/python -m pytest -q --cov=research_kit --cov-report=term:skip-covered --cov-report=json:coverage.json

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/python docs/gen_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
