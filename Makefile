# memstore — every command CI and people run goes through here.
# Tools that tests need (redis-server, FerretDB, kube-apiserver, helm, ...) are installed or
# built by the mk/*.mk fragments into $(TOOLS_DIR), outside the repo, keyed by version.
SHELL := /bin/bash
comma := ,
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TOOLS_DIR ?= $(HOME)/.cache/memstore-tools
export TOOLS_DIR
# pyproject.toml declares compatible ranges; requirements.lock pins every package of the
# environment (the project's extras below) to the exact version make, CI and the image install.
LOCK := requirements.lock
EXTRAS := dev,redis,mongodb,memcached,operator,mcp,agents,langchain,langgraph,model2vec,bench
# The virtualenv is rebuilt when pyproject.toml or the lock file changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv run test lint format tools clean bench lock

help:
	@echo "make run    - serve on the embedded backend at http://127.0.0.1:8080"
	@echo "make test   - install every tool the tests need, then run lint and the whole test suite"
	@echo "make lint   - ruff check, ruff format --check, mypy (strict; relaxed for tests), import contracts"
	@echo "make bench  - benchmarks (not part of make test)"
	@echo "make lock   - re-resolve requirements.lock after a change to pyproject.toml's dependencies"
	@echo "make image  - the container image (Docker with BuildKit, podman or buildah; see README)"

# uv installs the locked environment: on a fresh machine `make venv` took 27 s with pip and
# 9 s with uv, installing uv itself included (same packages, same versions). pip is still
# put in .venv (pinned) for what calls it there (the wheel test, users' habits).
UV_VERSION ?= 0.13.9
UV_DIR := $(TOOLS_DIR)/uv-$(UV_VERSION)
UV := $(UV_DIR)/bin/uv

$(UV):
	rm -rf $(UV_DIR)
	$(PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml $(LOCK) | $(UV)
	rm -rf $(VENV)
	UV_PYTHON_DOWNLOADS=never $(UV) venv -q --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q -c $(LOCK) pip==$(PIP_VERSION) -e '.[$(EXTRAS)]'
	touch $@

venv: $(STAMP)

# The lock is resolved by pip-tools, kept in its own virtualenv under $(TOOLS_DIR) so that it
# works while .venv no longer matches pyproject.toml. It keeps every pin that still fits the
# ranges and resolves only what changed; to move pins forward:
#   make lock LOCK_ARGS=--upgrade                      # everything
#   make lock LOCK_ARGS="--upgrade-package aiohttp"    # one package
PIP_VERSION ?= 26.3
PIP_TOOLS_VERSION ?= 7.6.2
PIP_TOOLS_DIR := $(TOOLS_DIR)/pip-tools-$(PIP_TOOLS_VERSION)
LOCK_ARGS ?=

$(PIP_TOOLS_DIR)/bin/pip-compile:
	rm -rf $(PIP_TOOLS_DIR)
	$(PYTHON) -m venv $(PIP_TOOLS_DIR)
	$(PIP_TOOLS_DIR)/bin/pip install -q --disable-pip-version-check \
		pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)

lock: $(PIP_TOOLS_DIR)/bin/pip-compile
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_TOOLS_DIR)/bin/pip-compile -q \
		$(foreach extra,$(subst $(comma), ,$(EXTRAS)),--extra $(extra)) \
		--allow-unsafe --strip-extras --no-emit-find-links --no-emit-index-url \
		--output-file $(LOCK) $(LOCK_ARGS) pyproject.toml

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
