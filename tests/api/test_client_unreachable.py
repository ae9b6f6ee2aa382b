"""A service that gives no answer at all is ``ServiceUnreachableError``, saying why in
words; still a ``BackendUnavailableError`` for callers that retry on that."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from yarl import URL

from memstore.client import MemoryClient
from memstore.core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    ServiceUnreachableError,
)
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


async def test_tls_to_a_plain_http_port_says_tls_failed(remote: MemoryClient) -> None:
    # The same service, spoken to in TLS: the reason must name TLS, not an OS error
    # (OpenSSL's error number read as errno would say "operation not permitted").
    plain = URL(remote.base_url)
    url = str(plain.with_scheme("https"))
    async with MemoryClient(url, "agent", timeout=5) as client:
        with pytest.raises(ServiceUnreachableError) as info:
            await client.get_entity("user", "u1")
    assert info.value.message.startswith(f"cannot reach memstore at {url}: TLS ")
    assert "not permitted" not in info.value.message


@pytest.mark.parametrize("url", ["localhost:8080", "ftp://h/", "http://", "http://h:99999"])
def test_a_malformed_base_url_is_a_configuration_error(url: str) -> None:
    # A permanent mistake: not a BackendUnavailableError that callers would retry.
    with pytest.raises(ConfigurationError) as info:
        MemoryClient(url, "agent")
    assert not isinstance(info.value, BackendUnavailableError)


async def test_the_url_is_shown_without_its_password() -> None:
    url = f"http://ada:s3cret-pw@127.0.0.1:{free_port()}"
    async with MemoryClient(url, "agent", timeout=1) as client:
        assert "s3cret" not in repr(client)
        with pytest.raises(ServiceUnreachableError) as info:
            await client.get_entity("user", "u1")
    assert "s3cret" not in str(info.value) and "ada" not in info.value.message
    with pytest.raises(ConfigurationError) as bad:
        MemoryClient("ftp://ada:s3cret-pw@h/", "agent")
    assert "s3cret" not in str(bad.value)
