# LangGraph's own store tests, which tests/integrations/langgraph_store/ runs against
# MemstoreStore: the tests/ folders of three LangGraph sdists on PyPI (MIT), unpacked into
# $(TOOLS_DIR)/langgraph-tests/<dist>-<version>/tests/; a no-op when present.
#   langgraph-checkpoint         tests/test_store.py (InMemoryStore), embed_test_utils.py
#   langgraph-checkpoint-sqlite  tests/test_store.py, test_async_store.py, test_ttl.py
#   langgraph-checkpoint-postgres tests/test_store.py, test_async_store.py, conftest.py
# langgraph-checkpoint is at requirements.lock's pin (the tests of the code we run with).
# The other two are not part of our environment (we take their tests, not their stores), so
# they are pinned here with the sha256 of their sdists. tests/integrations/langgraph_store/
# upstream.py reads these *_VERSION lines to find the folders.
LANGGRAPH_TESTS_DIR := $(TOOLS_DIR)/langgraph-tests
LANGGRAPH_CHECKPOINT_VERSION := $(shell sed -n 's/^langgraph-checkpoint==//p' $(LOCK))
LANGGRAPH_CHECKPOINT_SQLITE_VERSION ?= 3.1.2
LANGGRAPH_CHECKPOINT_SQLITE_SHA256 := 4e3f376fa6f192d6ad2a1a4643b039986f1593552ef870e9e45281575de6fbf2
LANGGRAPH_CHECKPOINT_POSTGRES_VERSION ?= 3.2.0
LANGGRAPH_CHECKPOINT_POSTGRES_SHA256 := dffef0e6822d7c614019f7f2c4bdbef42859746aee2d3e6d9d9747cf3744ca90

LANGGRAPH_TESTS := \
	$(LANGGRAPH_TESTS_DIR)/langgraph_checkpoint-$(LANGGRAPH_CHECKPOINT_VERSION)/tests \
	$(LANGGRAPH_TESTS_DIR)/langgraph_checkpoint_sqlite-$(LANGGRAPH_CHECKPOINT_SQLITE_VERSION)/tests \
	$(LANGGRAPH_TESTS_DIR)/langgraph_checkpoint_postgres-$(LANGGRAPH_CHECKPOINT_POSTGRES_VERSION)/tests

# $(1) = distribution name on PyPI, $(2) = version, $(3) = sha256 of the sdist (empty: the
# version is the lock's). `pip download --no-binary :all:` gets the sdist; only its tests/
# folder and LICENSE are kept (the package itself is never installed).
define langgraph_tests_rule
$(LANGGRAPH_TESTS_DIR)/$(subst -,_,$(1))-$(2)/tests: | venv
	@set -euo pipefail; \
	work=$$$$(mktemp -d); trap 'rm -rf "$$$$work"' EXIT; \
	$(BIN)/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
		-d "$$$$work" $(1)==$(2); \
	sdist="$$$$work/$(subst -,_,$(1))-$(2).tar.gz"; \
	if [ -n "$(3)" ]; then echo "$(3)  $$$$sdist" | sha256sum --quiet -c -; fi; \
	tar -xzf "$$$$sdist" -C "$$$$work" $(subst -,_,$(1))-$(2)/tests $(subst -,_,$(1))-$(2)/LICENSE; \
	mkdir -p $(LANGGRAPH_TESTS_DIR); rm -rf $(LANGGRAPH_TESTS_DIR)/$(subst -,_,$(1))-$(2); \
	mv "$$$$work/$(subst -,_,$(1))-$(2)" $(LANGGRAPH_TESTS_DIR)/; \
	echo "LangGraph's tests: $$@"
endef
$(eval $(call langgraph_tests_rule,langgraph-checkpoint,$(LANGGRAPH_CHECKPOINT_VERSION),))
$(eval $(call langgraph_tests_rule,langgraph-checkpoint-sqlite,$(LANGGRAPH_CHECKPOINT_SQLITE_VERSION),$(LANGGRAPH_CHECKPOINT_SQLITE_SHA256)))
$(eval $(call langgraph_tests_rule,langgraph-checkpoint-postgres,$(LANGGRAPH_CHECKPOINT_POSTGRES_VERSION),$(LANGGRAPH_CHECKPOINT_POSTGRES_SHA256)))

.PHONY: langgraph-tests
langgraph-tests: $(LANGGRAPH_TESTS)

tools:: $(LANGGRAPH_TESTS)
