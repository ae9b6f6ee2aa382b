# Redis 7.x for the Redis backend's tests: Debian's redis-server and redis-tools.
#
# tests/servers/redis.py starts a standalone server and a 6-node Redis Cluster (formed with
# `redis-cli --cluster create`) from these binaries on free loopback ports. A no-op when
# redis-server >= 7 and redis-cli are already on PATH; otherwise apt-get installs them
# (as root, or through sudo). Nothing is cached in $(TOOLS_DIR): the packages are system-wide.
REDIS_MIN_MAJOR ?= 7

.PHONY: redis
redis:
	@set -euo pipefail; \
	have() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null && \
		[ "$$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')" -ge $(REDIS_MIN_MAJOR) ]; }; \
	if have; then exit 0; fi; \
	sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	echo "installing redis-server and redis-tools (Debian)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		redis-server redis-tools >/dev/null 2>&1 || { \
		$$sudo apt-get update -q >/dev/null; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			redis-server redis-tools >/dev/null; }; \
	have || { echo "redis-server >= $(REDIS_MIN_MAJOR) is still missing" >&2; exit 1; }; \
	redis-server --version

tools:: redis
