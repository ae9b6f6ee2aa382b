# What the node tests (tests/node, fixture tests/servers/node.py) need beyond the control
# plane of mk/k8s.mk: the Debian packages (mk/image.mk's node-packages), kubelet, kube-proxy
# and kube-scheduler (mk/k8s.mk), CoreDNS (mk/coredns.mk), the pause image below and the
# image under test (mk/image.mk's test-image). Every piece is cached; a warm run is a no-op.
.PHONY: node-tools pause-image
node-tools: node-packages k8s-tools k8s-node-tools $(COREDNS_BIN) pause-image test-image

tools:: node-tools

# The pod sandbox image: Kubernetes' own pause.c (from the module mk/k8s.mk builds from),
# compiled static, as an image with /pause as its entrypoint. Keyed by K8S_VERSION.
PAUSE_IMAGE := localhost/pause:$(K8S_VERSION)
PAUSE_ARCHIVE := $(IMAGE_CACHE)/pause-$(K8S_VERSION).tar
export MEMSTORE_PAUSE_ARCHIVE := $(PAUSE_ARCHIVE)
export MEMSTORE_PAUSE_IMAGE := $(PAUSE_IMAGE)

$(PAUSE_ARCHIVE): | node-packages k8s-tools $(BUILDAH_CONF)
	@set -euo pipefail; mkdir -p $(IMAGE_CACHE); \
	src=$$(cd tools/k8s && GOTOOLCHAIN=local GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes); \
	work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	gcc -Os -Wall -Werror -static -DVERSION=$(K8S_VERSION) -o "$$work/pause" "$$src/build/pause/linux/pause.c"; \
	ctr=$$($(BUILDAH) from scratch); \
	$(BUILDAH) copy --quiet "$$ctr" "$$work/pause" /pause >/dev/null; \
	$(BUILDAH) config --entrypoint '["/pause"]' --user 65535:65535 "$$ctr"; \
	$(BUILDAH) commit --quiet --rm "$$ctr" $(PAUSE_IMAGE) >/dev/null; \
	$(BUILDAH) push --quiet $(PAUSE_IMAGE) docker-archive:$@.tmp:$(PAUSE_IMAGE); mv $@.tmp $@

pause-image: $(PAUSE_ARCHIVE)
