# Helm v3, built from the Go module proxy at a pinned version (no replace directives,
# local toolchain) into $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm; a no-op when already cached.
# Also the image / kind flow for people with Docker (not exercised by CI here).
HELM_VERSION ?= v3.22.0
HELM_DIR := $(TOOLS_DIR)/helm-$(HELM_VERSION)
HELM_BIN := $(HELM_DIR)/helm
export HELM_BIN
# What helm's own Makefile stamps in with -ldflags: without it `helm version` says "v3.22" and
# the built-in Kubernetes version is 1.20 (helm's default Capabilities / lint deprecations).
# 1.37 = the k8s.io/client-go v0.37 that helm v3.22.0 is built with.
HELM_K8S_MINOR ?= 37
HELM_LDFLAGS := -w -s \
	-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/internal/version.metadata= \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR)

$(HELM_BIN):
	mkdir -p $(HELM_DIR)
	GOTOOLCHAIN=local GOBIN=$(HELM_DIR) GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		go install -trimpath -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	$(HELM_BIN) version --short

.PHONY: helm
helm: $(HELM_BIN)

tools:: $(HELM_BIN)
