"""MCP tests: real ``memstore serve`` processes driven by the official MCP client."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.security.conftest import write_tokens_file
from tests.support.procs import ServiceProcess, running_service

NS_A = "team-a"
NS_B = "team-b"
#: The name the auth-enabled service is reached by, besides loopback.
PUBLIC_HOST = "memstore.example.com"


@dataclass(frozen=True)
class McpTokens:
    a: str  # read+write on team-a only
    a_reader: str  # read on team-a only
    admin: str  # everything, every namespace
    ab: str  # read+write on team-a and team-b


@asynccontextmanager
async def connect(
    base_url: str, token: str | None = None, *, mode: str = "auto", host: str | None = None
) -> AsyncIterator[Client]:
    """An official MCP client on ``base_url``/mcp over Streamable HTTP, sending ``token``."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if host is not None:
        headers["Host"] = host
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client


@pytest.fixture(scope="module")
def mcp_tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[McpTokens, Path]:
    tokens = McpTokens(*(secrets.token_urlsafe(24) for _ in range(4)))
    path = write_tokens_file(
        tmp_path_factory.mktemp("mcp-tokens") / "tokens.json",
        [
            ("team-a", tokens.a, [NS_A], ["read", "write"]),
            ("team-a-reader", tokens.a_reader, [NS_A], ["read"]),
            ("admin", tokens.admin, ["*"], ["read", "write", "admin"]),
            ("team-ab", tokens.ab, [NS_A, NS_B], ["read", "write"]),
        ],
    )
    return tokens, path


@pytest.fixture(scope="module")
def auth_service(
    tmp_path_factory: pytest.TempPathFactory, mcp_tokens: tuple[McpTokens, Path]
) -> Iterator[ServiceProcess]:
    """``memstore serve`` with auth on, reachable as PUBLIC_HOST too."""
    env = {
        "MEMSTORE_AUTH_ENABLED": "true",
        "MEMSTORE_AUTH_TOKENS_FILE": str(mcp_tokens[1]),
        "MEMSTORE_MCP_ALLOWED_HOSTS": f"{PUBLIC_HOST},{PUBLIC_HOST}:*",
        "MEMSTORE_MCP_ALLOWED_ORIGINS": f"https://{PUBLIC_HOST}",
    }
    with running_service(tmp_path_factory.mktemp("mcp-auth-service"), env) as svc:
        yield svc
