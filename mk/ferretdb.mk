# FerretDB v1 (SQLite backend): the MongoDB-wire server the mongodb backend's tests run against.
#
# Built from the Go module proxy at a pinned version, with the local Go toolchain and no
# replace directives, into $(TOOLS_DIR)/ferretdb-$(FERRETDB_VERSION)/ferretdb; a no-op when
# that binary exists. v1.24.2 is the last v1 release (v2 needs PostgreSQL + DocumentDB).
#
# Why not plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`:
#  1. `go install pkg@version` also fetches the module's version list to look for a
#     deprecation notice; the proxy we can reach answers that list with 403, so it fails.
#  2. Even where it builds, the binary panics at start: FerretDB reads its version from
#     build/version/version.txt, a file its release tooling (`task gen-version`) generates
#     and the module zip does not contain.
# So we do what FerretDB's own build does: fetch the exact released module (`go mod
# download`, checksum-verified), copy it, write version.txt, and `go build` its cmd/ferretdb
# with the module's own go.mod/go.sum (-mod=readonly: nothing is re-resolved).
FERRETDB_VERSION ?= v1.24.2
FERRETDB_DIR := $(TOOLS_DIR)/ferretdb-$(FERRETDB_VERSION)
FERRETDB_BIN := $(FERRETDB_DIR)/ferretdb
export FERRETDB_BIN

$(FERRETDB_BIN):
	@set -euo pipefail; \
	export GOTOOLCHAIN=local GOFLAGS=-mod=readonly; \
	src=$$(cd /tmp && go mod download -json github.com/FerretDB/FerretDB@$(FERRETDB_VERSION) \
		| sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$src"; \
	work=$(FERRETDB_DIR)/src; rm -rf "$$work"; mkdir -p $(FERRETDB_DIR); \
	cp -r "$$src" "$$work"; chmod -R u+w "$$work"; \
	echo $(FERRETDB_VERSION) > "$$work/build/version/version.txt"; \
	echo memstore-build > "$$work/build/version/package.txt"; \
	cd "$$work" && go build -trimpath -buildvcs=false -o $(FERRETDB_BIN).tmp ./cmd/ferretdb; \
	mv $(FERRETDB_BIN).tmp $(FERRETDB_BIN); rm -rf "$$work"; \
	$(FERRETDB_BIN) --version

.PHONY: ferretdb
ferretdb: $(FERRETDB_BIN)

tools:: $(FERRETDB_BIN)
