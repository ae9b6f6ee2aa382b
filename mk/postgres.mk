# PostgreSQL for the peer benchmark (bench/peers.py: LangGraph's AsyncPostgresStore), from
# Debian (`postgresql`: bookworm's is 15), never Docker. apt-get installs it when no
# /usr/lib/postgresql/*/bin/postgres is there (as root, or through sudo). The server refuses
# to run as root: as root, the cluster belongs to Debian's `postgres` user, created by the
# package. A cluster is initialised once (initdb, trust authentication on loopback, superuser
# `postgres`) into $(POSTGRES_CLUSTER), keyed by the major version; each bench run copies it
# into a fresh folder under /tmp and starts its own server on a free port (bench/peers.py
# start_postgres; without the cached cluster it runs initdb itself).
POSTGRES_BINDIR = $(lastword $(sort $(wildcard /usr/lib/postgresql/*/bin)))
POSTGRES_MAJOR = $(notdir $(patsubst %/bin,%,$(POSTGRES_BINDIR)))

.PHONY: postgres postgres-install
postgres-install:
	@set -euo pipefail; \
	if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then exit 0; fi; \
	sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	echo "installing postgresql (Debian)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		postgresql >/dev/null 2>&1 || { \
		$$sudo apt-get update -q >/dev/null; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			postgresql >/dev/null; }

# A recursive make: the version is known only once the package is there.
postgres: postgres-install
	@$(MAKE) --no-print-directory postgres-cluster

.PHONY: postgres-cluster
postgres-cluster:
	@set -euo pipefail; \
	cluster=$(TOOLS_DIR)/postgres-$(POSTGRES_MAJOR)/cluster; \
	if [ -f "$$cluster/PG_VERSION" ]; then exit 0; fi; \
	work=$$(mktemp -d /tmp/memstore-pg-init-XXXXXX); trap 'rm -rf "$$work"' EXIT; \
	as=""; if [ "$$(id -u)" -eq 0 ]; then chown postgres: "$$work"; as="runuser -u postgres --"; fi; \
	$$as $(POSTGRES_BINDIR)/initdb -D "$$work/cluster" -U postgres -A trust -E UTF8 >/dev/null; \
	mkdir -p $(TOOLS_DIR)/postgres-$(POSTGRES_MAJOR); rm -rf "$$cluster"; \
	mv "$$work/cluster" "$$cluster"; \
	echo "PostgreSQL $(POSTGRES_MAJOR) cluster: $$cluster"

tools:: postgres
