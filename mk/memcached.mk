# Memcached for the shared second-level cache's tests and bench: Debian's memcached.
#
# tests/servers/memcached.py starts one on a free loopback port from this binary. A no-op
# when memcached >= 1.6 is already on PATH; otherwise apt-get installs it (as root, or
# through sudo). Nothing is cached in $(TOOLS_DIR): the package is system-wide. Debian's
# package also enables a memcached service listening on 127.0.0.1:11211; the tests never
# use it (they start their own on a free port).
MEMCACHED_MIN ?= 1.6

.PHONY: memcached
memcached:
	@set -euo pipefail; \
	have() { command -v memcached >/dev/null && \
		[ "$$(printf '%s\n' $(MEMCACHED_MIN) "$$(memcached --version | sed -n 's/^memcached \([0-9.]*\).*/\1/p')" \
			| sort -V | head -1)" = "$(MEMCACHED_MIN)" ]; }; \
	if have; then exit 0; fi; \
	sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	echo "installing memcached (Debian)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		memcached >/dev/null 2>&1 || { \
		$$sudo apt-get update -q >/dev/null; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			memcached >/dev/null; }; \
	have || { echo "memcached >= $(MEMCACHED_MIN) is still missing" >&2; exit 1; }; \
	memcached --version

tools:: memcached
