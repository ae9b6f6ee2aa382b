"""A service that gives no answer at all is ``ServiceUnreachableError``, saying why in
words; still a ``BackendUnavailableError`` for callers that retry on that."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from memstore.client import MemoryClient
from memstore.core.errors import BackendUnavailableError, ServiceUnreachableError
from tests.support.procs import free_port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{free}", "connection refused"),
        ("http://no-such-host.invalid:8080", "host name 'no-such-host.invalid' not found"),
        ("http://127.0.0.1:{silent}", "no answer within 0.2 s"),
    ],
)
async def test_no_answer_is_service_unreachable(url: str, reason: str, silent_port: int) -> None:
    url = url.format(free=free_port(), silent=silent_port)
    async with MemoryClient(url, "agent", timeout=0.2) as client:
        with pytest.raises(ServiceUnreachableError) as info:
            await client.get_entity("user", "u1")
        assert not await client.ping()
    error = info.value
    assert isinstance(error, BackendUnavailableError)
    assert error.code == "service_unreachable"
    assert error.message == f"cannot reach memstore at {url}: {reason}"
