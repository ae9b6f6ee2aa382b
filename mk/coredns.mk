# CoreDNS for the node tests' cluster DNS (tests/servers/node.py), built from mk/coredns/: a
# tiny main with only bind, ready, health, errors, log, cache and kubernetes (no forward
# plugin: names outside the cluster are never asked of another resolver). Pinned in its
# go.mod/go.sum and built with -mod=readonly. Cached in $(TOOLS_DIR)/coredns-$(COREDNS_VERSION)/;
# a no-op when present.
COREDNS_VERSION ?= v1.11.3
COREDNS_DIR := $(TOOLS_DIR)/coredns-$(COREDNS_VERSION)
COREDNS_BIN := $(COREDNS_DIR)/coredns
export COREDNS_BIN

$(COREDNS_BIN):
	@set -euo pipefail; mkdir -p $(COREDNS_DIR); \
	cd mk/coredns && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -trimpath -buildvcs=false -ldflags='-s -w' -o $(COREDNS_BIN).tmp .; \
	mv $(COREDNS_BIN).tmp $(COREDNS_BIN); \
	$(COREDNS_BIN) -version | head -1

.PHONY: coredns
coredns: $(COREDNS_BIN)
