# Kubernetes control plane for the operator tests (tests/servers/kube.py):
# kube-apiserver, kube-controller-manager and kubectl built from k8s.io/kubernetes
# through the tools/k8s Go module, plus etcd 3.4 from Debian (etcd-server).
# Cached in $(TOOLS_DIR)/k8s-$(K8S_VERSION)/; a no-op once the binaries exist.
K8S_VERSION ?= v1.30.14
K8S_DIR := $(TOOLS_DIR)/k8s-$(K8S_VERSION)
K8S_BINS := $(K8S_DIR)/kube-apiserver $(K8S_DIR)/kube-controller-manager $(K8S_DIR)/kubectl
K8S_MAJOR := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR := $(word 2,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
# Stamp the version so the server does not report v0.0.0 (same variables as hack/lib/version.sh).
K8S_LDFLAGS := -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=$(K8S_MAJOR) -X $(p).gitMinor=$(K8S_MINOR) \
	-X $(p).gitTreeState=clean -X $(p).buildDate=1970-01-01T00:00:00Z)

export KUBE_TOOLS_DIR := $(K8S_DIR)

.PHONY: k8s-tools
tools:: k8s-tools

k8s-tools: $(K8S_BINS) /usr/bin/etcd

# Keyed by version only (no file prerequisites): a fresh clone must not rebuild.
$(K8S_BINS) &:
	@mkdir -p $(K8S_DIR)
	cd tools/k8s && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $(K8S_DIR)/ \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kubectl
	@touch $(K8S_BINS)

# The node the node tests run (tests/servers/node.py): kubelet, kube-proxy, kube-scheduler
# from the same module and version stamp. A group of its own so that adding it did not
# relink the control plane binaries of an existing cache.
K8S_NODE_BINS := $(K8S_DIR)/kubelet $(K8S_DIR)/kube-proxy $(K8S_DIR)/kube-scheduler

.PHONY: k8s-node-tools
k8s-node-tools: $(K8S_NODE_BINS)

$(K8S_NODE_BINS) &:
	@mkdir -p $(K8S_DIR)
	cd tools/k8s && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $(K8S_DIR)/ \
		k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kube-proxy \
		k8s.io/kubernetes/cmd/kube-scheduler
	@touch $(K8S_NODE_BINS)

/usr/bin/etcd:
	apt-get install -y -q etcd-server || (apt-get update -q && apt-get install -y -q etcd-server)

# The kube fixture makes its certificates with the openssl CLI.
k8s-tools: /usr/bin/openssl
/usr/bin/openssl:
	apt-get install -y -q openssl || (apt-get update -q && apt-get install -y -q openssl)

# The operator tests check a redis backend against a real redis-server (Debian's; a
# command check rather than a file target, so another fragment may install it too).
.PHONY: k8s-redis-server
k8s-tools: k8s-redis-server
k8s-redis-server:
	@command -v redis-server >/dev/null || apt-get install -y -q redis-server \
		|| (apt-get update -q && apt-get install -y -q redis-server)
