"""A real ``memstore serve`` process (embedded backend) shared by a test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import ServiceProcess, running_service


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        # Webhooks are stored but not delivered: fuzzed webhook URLs must not be called.
        "MEMSTORE_WEBHOOKS_ENABLED": "false",
        # Long-polls of a fuzzer (every `wait` the document allows) stay short.
        "MEMSTORE_CHANGES_MAX_WAIT_SECONDS": "0.2",
    }
    with running_service(tmp_path_factory.mktemp("live-service"), env) as svc:
        yield svc
