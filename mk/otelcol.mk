# OpenTelemetry Collector for the tracing end-to-end tests: OTLP receiver (gRPC and HTTP)
# -> file exporter.
#
# The core distribution (cmd/otelcorecol) is not published as a module and Jaeger's go.mod
# has a replace directive, so neither can be `go install`ed from the module proxy. Instead
# mk/otelcol/ is a tiny Go module (what the collector builder would generate) with exactly
# two components, pinned in its go.mod/go.sum and built with -mod=readonly: nothing is
# re-resolved. Cached in $(TOOLS_DIR)/otelcol-$(OTELCOL_VERSION)/otelcol (~28 MB); a no-op
# when present. Cold build: ~2 min on 2 cores (module downloads + compile).
OTELCOL_VERSION ?= v0.148.0
OTELCOL_DIR := $(TOOLS_DIR)/otelcol-$(OTELCOL_VERSION)
OTELCOL_BIN := $(OTELCOL_DIR)/otelcol
export OTELCOL_BIN

$(OTELCOL_BIN):
	@set -euo pipefail; mkdir -p $(OTELCOL_DIR); \
	cd mk/otelcol && GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
		go build -trimpath -buildvcs=false -ldflags='-s -w' -o $(OTELCOL_BIN).tmp .; \
	mv $(OTELCOL_BIN).tmp $(OTELCOL_BIN); \
	$(OTELCOL_BIN) --version

.PHONY: otelcol
otelcol: $(OTELCOL_BIN)

tools:: $(OTELCOL_BIN)
