# memstore — every command CI and people run goes through here.
# Tools that tests need (redis-server, FerretDB, kube-apiserver, helm, ...) are installed or
# built by the mk/*.mk fragments into $(TOOLS_DIR), outside the repo, keyed by version.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TOOLS_DIR ?= $(HOME)/.cache/memstore-tools
export TOOLS_DIR
# The virtualenv is rebuilt when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv run test lint format tools clean bench

help:
	@echo "make run    - serve on the embedded backend at http://127.0.0.1:8080"
	@echo "make test   - install every tool the tests need, then run lint and the whole test suite"
	@echo "make lint   - ruff check, ruff format --check, mypy (strict; relaxed for tests), import contracts"
	@echo "make bench  - benchmarks (not part of make test)"

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip==26.3
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,redis,mongodb,operator]'
	touch $@

venv: $(STAMP)

run: venv
	$(BIN)/memstore serve

# Python sources that lint and format cover; mypy is strict everywhere but tests/, which
# pyproject.toml relaxes ([[tool.mypy.overrides]]).
PY_SOURCES := service operator tests bench tools

lint: venv
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy service/memstore operator/memstore_operator tests bench tools
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

# Each mk/*.mk fragment adds its tool to this double-colon target.
tools:: venv

test: venv tools lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

include $(wildcard mk/*.mk)
