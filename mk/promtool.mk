# promtool (Prometheus v3.16.0, Go module version v0.316.0) for the chart's alert tests:
# `promtool check rules` and `promtool test rules` on the rendered PrometheusRule.
# `go install` from the module proxy (its go.mod has no replace directives), version
# stamped as Prometheus' own build does. Cached in $(TOOLS_DIR)/promtool-$(PROMTOOL_VERSION)/
# (~88 MB); a no-op when present. Cold build: ~6 min on a loaded 2-core machine (many modules).
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL_RELEASE ?= 3.16.0
PROMTOOL_DIR := $(TOOLS_DIR)/promtool-$(PROMTOOL_VERSION)
PROMTOOL_BIN := $(PROMTOOL_DIR)/promtool
export PROMTOOL_BIN

$(PROMTOOL_BIN):
	mkdir -p $(PROMTOOL_DIR)
	GOTOOLCHAIN=local GOBIN=$(PROMTOOL_DIR) GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		go install -trimpath \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=$(PROMTOOL_RELEASE)' \
		github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	$(PROMTOOL_BIN) --version

.PHONY: promtool
promtool: $(PROMTOOL_BIN)

tools:: $(PROMTOOL_BIN)
