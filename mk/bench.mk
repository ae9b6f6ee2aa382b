# Benchmarks: `make bench` (not part of `make test`; tests/bench runs a one-second smoke run
# of the harness). Load comes from wrk (Debian package, driven by bench/lua/*.lua); the
# backends (redis-server, FerretDB) are the ones `make tools` provides for the tests.
#   make bench BENCH_ARGS="--only 'redis/' --rounds 5"   # a subset, more rounds
#   make bench BENCH_ARGS="--only '^peers/'"             # the peer table alone
#   BENCH_PEERS_QUICK=1 make bench BENCH_ARGS="--only '^peers/'"   # the same in seconds
#   make bench-profile                                  # installs py-spy (pinned) into .venv
# A whole run (no --only) ends by rewriting README.md's Performance section from its results
# (`python -m bench --readme`, bench/sections.py); BENCH_README=0 leaves README.md alone:
#   make bench BENCH_README=0
PY_SPY_VERSION ?= 0.4.1
BENCH_ARGS ?=
BENCH_README ?= 1
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: bench bench-tools bench-profile

bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends wrk; }
	@command -v redis-benchmark >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends redis-tools; }

tools:: bench-tools

# Only the tools the benchmark uses (not every `make tools` target: no Kubernetes build).
# FerretDB's rule lives in mk/ferretdb.mk (the mongodb backend's); without it the mongodb
# group reports itself skipped.
# The peer table (bench/peers.py) needs PostgreSQL (mk/postgres.mk) and Agent Memory Server
# with Redis Stack (mk/ams.mk); if AMS cannot be installed, its row is listed as skipped.
bench: venv bench-tools redis memcached postgres
	@if $(MAKE) -q ferretdb >/dev/null 2>&1; [ $$? -ne 2 ]; then $(MAKE) --no-print-directory ferretdb; fi
	@$(MAKE) --no-print-directory ams || echo "Agent Memory Server not installed: its peer row is skipped"
	$(BIN)/python -m bench $(BENCH_ARGS) $(if $(filter 1,$(BENCH_README)),--update-readme)

bench-profile: venv
	@$(BIN)/py-spy --version 2>/dev/null | grep -q ' $(PY_SPY_VERSION)$$' || \
		$(BIN)/pip install -q --disable-pip-version-check py-spy==$(PY_SPY_VERSION)
	@echo "py-spy $(PY_SPY_VERSION) in $(BIN); see bench/README.md (Profiling)"
