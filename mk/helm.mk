# Helm v3, built from the Go module proxy at a pinned version (no replace directives,
# local toolchain) into $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm; a no-op when already cached.
# Also the kind flow for people with Docker (not exercised by CI here).
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

# Regenerate the chart's derived files (values.schema.json from the CRD, the README's
# values table from values.yaml); tests/helm/test_chart.py fails when they are stale.
.PHONY: chart-gen
chart-gen: venv
	$(BIN)/python -m tools.chartgen

# ---------------------------------------------------------------------------------------
# kind flow, for people with Docker. Not exercised by CI here (no Docker engine on our
# machines). `make image` lives in mk/image.mk.
# ---------------------------------------------------------------------------------------
KIND_VERSION ?= v0.33.0
KIND_BIN := $(TOOLS_DIR)/kind-$(KIND_VERSION)/kind
KIND_CLUSTER ?= memstore
KIND_NAMESPACE ?= memstore

.PHONY: kind kind-up kind-deploy kind-down

$(KIND_BIN):
	mkdir -p $(dir $(KIND_BIN))
	GOTOOLCHAIN=local GOBIN=$(dir $(KIND_BIN)) CGO_ENABLED=0 go install sigs.k8s.io/kind@$(KIND_VERSION)

kind: $(KIND_BIN)

kind-up: $(KIND_BIN)
	$(KIND_BIN) get clusters | grep -qx '$(KIND_CLUSTER)' || $(KIND_BIN) create cluster --name $(KIND_CLUSTER) --wait 120s

# The image is loaded into the nodes (pullPolicy Never): nothing is pulled from a registry.
kind-deploy: image $(KIND_BIN) $(HELM_BIN)
	$(KIND_BIN) load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	$(HELM_BIN) upgrade --install memstore charts/memstore \
		--kube-context kind-$(KIND_CLUSTER) -n $(KIND_NAMESPACE) --create-namespace \
		--set image.registry= --set image.repository=$(IMAGE_REPO) --set image.tag=$(IMAGE_TAG) \
		--set image.pullPolicy=Never --set memoryStore.spec.imagePullPolicy=Never \
		--wait --timeout 5m
	kubectl --context kind-$(KIND_CLUSTER) -n $(KIND_NAMESPACE) wait memorystore/memstore \
		--for=jsonpath='{.status.phase}'=Ready --timeout=180s
	$(HELM_BIN) test memstore --kube-context kind-$(KIND_CLUSTER) -n $(KIND_NAMESPACE)

kind-down: $(KIND_BIN)
	$(KIND_BIN) delete cluster --name $(KIND_CLUSTER)
