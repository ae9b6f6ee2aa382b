# The container image (Dockerfile): `make image` for users, `make test-image` for the node
# tests (tests/node, tests/servers/node.py).
#
# make image: builds $(IMAGE) from the official python:3.11-slim-bookworm (PYTHON_IMAGE)
# with the first engine found: a running Docker daemon (needs BuildKit, i.e. the buildx
# plugin: the legacy builder cannot do the Dockerfile's RUN --mount), else podman, else
# buildah. IMAGE_ENGINE=docker|podman|buildah picks one.
#
# make test-image: what `make test` builds, without Docker Hub: the same Dockerfile,
# unchanged, built by buildah (Debian's) on a local base image, LOCAL_PYTHON_IMAGE:
# Debian bookworm from debootstrap (python3 3.11) plus one layer that shapes it like
# python:3.11-slim (PATH, LANG=C.UTF-8, pip/python in /usr/local from `python3 -m venv`).
# The build runs with host networking and the machine's CA bundle mounted read-only over
# the image's, because the Dockerfile's builder stage installs build-essential (Debian
# mirror) and resolves requirements.lock against the package index itself; that keeps the
# build the one users run (no Dockerfile switch for "wheels from elsewhere"). The result is
# saved as a docker-archive in $(IMAGE_CACHE), named by the hash of every build input: an
# unchanged tree does not rebuild. No --layers: buildah 1.28 reuses a cached
# `RUN --mount=type=bind,from=builder` step although the builder's output changed (a
# source change then gave an image with the old code), so every build is a full one.
IMAGE_REPO ?= memstore
IMAGE_TAG ?= dev
IMAGE := $(IMAGE_REPO):$(IMAGE_TAG)
APP_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PYTHON_IMAGE ?= python:3.11-slim-bookworm
IMAGE_ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; \
	elif command -v buildah >/dev/null 2>&1; then echo buildah; fi)
IMAGE_BUILD_ARGS := --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) --build-arg VERSION=$(APP_VERSION)

.PHONY: image test-image local-python-image image-engine node-packages

image:
	@set -euo pipefail; \
	case "$(IMAGE_ENGINE)" in \
	docker) docker buildx version >/dev/null 2>&1 || { echo "make image: Docker needs BuildKit" \
		"(the buildx plugin, e.g. Debian's docker-buildx) for the Dockerfile's RUN --mount;" \
		"or use IMAGE_ENGINE=podman or buildah" >&2; exit 1; }; \
		DOCKER_BUILDKIT=1 docker build $(IMAGE_BUILD_ARGS) -t $(IMAGE) . ;; \
	podman) podman build $(IMAGE_BUILD_ARGS) -t $(IMAGE) . ;; \
	buildah) buildah build $(IMAGE_BUILD_ARGS) -t $(IMAGE) . ;; \
	*) echo "make image: no container engine (a running Docker, podman or buildah);" \
		"'make image-engine' installs buildah (Debian)" >&2; exit 1 ;; \
	esac

SUDO_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)
# Debian packages of the image build and of the node tests' node (a command check each, so
# that it is a no-op when present): buildah and debootstrap for the image; containerd, runc
# and the CNI plugins for pods; iptables and conntrack for kube-proxy.
NODE_PACKAGES := buildah:buildah debootstrap:debootstrap containerd:containerd runc:runc \
	/usr/lib/cni/bridge:containernetworking-plugins iptables:iptables conntrack:conntrack

image-engine node-packages:
	@set -euo pipefail; missing=""; \
	for p in $(NODE_PACKAGES); do cmd=$${p%%:*}; pkg=$${p#*:}; \
		if [ "$${cmd#/}" != "$$cmd" ]; then [ -e "$$cmd" ] || missing="$$missing $$pkg"; \
		else command -v "$$cmd" >/dev/null 2>&1 || missing="$$missing $$pkg"; fi; done; \
	[ -z "$$missing" ] && exit 0; echo "installing (Debian):$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$(SUDO_ROOT) apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || { \
		$(SUDO_ROOT) apt-get update -q >/dev/null; \
		$(SUDO_ROOT) apt-get install -y -q --no-install-recommends $$missing >/dev/null; }

# --- the local base image -------------------------------------------------------------
LOCAL_PYTHON_VERSION ?= 3.11-bookworm-1
LOCAL_PYTHON_IMAGE := localhost/memstore-python:$(LOCAL_PYTHON_VERSION)
DEBIAN_MIRROR ?= http://deb.debian.org/debian
IMAGE_CACHE := $(TOOLS_DIR)/images
LOCAL_PYTHON_STAMP := $(IMAGE_CACHE)/memstore-python-$(LOCAL_PYTHON_VERSION).id
# $(BUILDAH) keeps its network configuration (even with host networking or none it creates
# /etc/cni/net.d) in the cache instead: the tests leave the machine as it was.
BUILDAH_CONF := $(IMAGE_CACHE)/containers.conf
BUILDAH := CONTAINERS_CONF=$(BUILDAH_CONF) buildah

$(BUILDAH_CONF):
	@mkdir -p $(IMAGE_CACHE)/cni
	@printf '[network]\nnetwork_config_dir = "%s"\n' $(IMAGE_CACHE)/cni > $@

# Keyed by LOCAL_PYTHON_VERSION (bump it to take newer Debian packages) and by the image
# still being in buildah's storage.
local-python-image: image-engine $(BUILDAH_CONF)
	@set -euo pipefail; \
	if [ -f $(LOCAL_PYTHON_STAMP) ] && $(BUILDAH) inspect --type image $(LOCAL_PYTHON_IMAGE) >/dev/null 2>&1; \
		then exit 0; fi; \
	mkdir -p $(IMAGE_CACHE); root=$$(mktemp -d); trap 'rm -rf "$$root"' EXIT; \
	echo "debootstrap bookworm (python3, python3-venv, ca-certificates) -> $(LOCAL_PYTHON_IMAGE)"; \
	debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
		bookworm "$$root" $(DEBIAN_MIRROR) >/dev/null; \
	rm -rf "$$root"/var/lib/apt/lists/* "$$root"/var/cache/apt/*.bin "$$root"/var/cache/apt/archives/*.deb; \
	ctr=$$($(BUILDAH) from scratch); trap '$(BUILDAH) rm "$$ctr" >/dev/null; rm -rf "$$root"' EXIT; \
	$(BUILDAH) copy --quiet "$$ctr" "$$root" / >/dev/null; \
	$(BUILDAH) config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env LANG=C.UTF-8 --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
		--cmd python3 "$$ctr"; \
	$(BUILDAH) run --network none "$$ctr" -- python3 -m venv /usr/local; \
	$(BUILDAH) run --network none "$$ctr" -- ln -sf python3 /usr/local/bin/python; \
	$(BUILDAH) commit --quiet --rm "$$ctr" $(LOCAL_PYTHON_IMAGE) > $(LOCAL_PYTHON_STAMP); trap 'rm -rf "$$root"' EXIT

# --- the image the node tests run -------------------------------------------------------
# Every input of the build: the Dockerfile, .dockerignore and what it lets into the context.
IMAGE_INPUTS = $(shell { echo $(LOCAL_PYTHON_VERSION) $(APP_VERSION); \
	find Dockerfile .dockerignore pyproject.toml requirements.lock README.md service operator \
		charts/memstore/crds -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
		! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha1sum; } | sha1sum | cut -c1-12)
TEST_IMAGE_TAG = test-$(IMAGE_INPUTS)
TEST_IMAGE_ARCHIVE = $(IMAGE_CACHE)/memstore-$(TEST_IMAGE_TAG).tar
# The last test image built: what tests/servers/node.py loads into the node.
export MEMSTORE_TEST_IMAGE_INFO := $(IMAGE_CACHE)/memstore-test.json

test-image: local-python-image
	@set -euo pipefail; archive=$(TEST_IMAGE_ARCHIVE); tag=$(TEST_IMAGE_TAG); \
	if [ ! -f "$$archive" ]; then \
		echo "buildah: $(IMAGE_REPO):$$tag (base $(LOCAL_PYTHON_IMAGE))"; \
		$(BUILDAH) build --quiet --network host \
			--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
			--build-arg PYTHON_IMAGE=$(LOCAL_PYTHON_IMAGE) --build-arg VERSION=$(APP_VERSION) \
			-t localhost/$(IMAGE_REPO):$$tag . >/dev/null; \
		rm -f $(IMAGE_CACHE)/memstore-test-*.tar; \
		$(BUILDAH) push --quiet localhost/$(IMAGE_REPO):$$tag \
			docker-archive:$$archive.tmp:$(IMAGE_REPO):$$tag; \
		mv $$archive.tmp $$archive; \
		old=$$($(BUILDAH) images --noheading --format '{{.Name}}:{{.Tag}}' \
			| grep '^localhost/$(IMAGE_REPO):test-' | grep -v ":$$tag$$" || true); \
		[ -z "$$old" ] || $(BUILDAH) rmi $$old >/dev/null 2>&1 || true; \
	fi; \
	printf '{"archive": "%s", "image": "docker.io/library/%s:%s"}\n' \
		"$$archive" $(IMAGE_REPO) "$$tag" > $(MEMSTORE_TEST_IMAGE_INFO)
