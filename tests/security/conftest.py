"""Auth-enabled services for the security tests: a tokens file with tenants A and B, a
read-only token for A, an admin token for A only, and an admin token for everything."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.core.payload_codec import new_kek_line
from memstore.core.settings import Settings
from memstore.server.app import create_app
from memstore.server.auth import hash_token

NS_A = "tenant-a"
NS_B = "tenant-b"


@dataclass(frozen=True)
class Tokens:
    a: str  # read+write on tenant-a
    b: str  # read+write on tenant-b
    a_reader: str  # read on tenant-a
    a_admin: str  # read, write and admin on tenant-a (configures it: webhooks)
    b_admin: str  # read, write and admin on tenant-b
    admin: str  # everything, every namespace
    path: Path

    @staticmethod
    def header(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def write_tokens_file(path: Path, entries: list[tuple[str, str, list[str], list[str]]]) -> Path:
    doc = {
        "tokens": [
            {"name": name, "sha256": hash_token(tok), "namespaces": ns, "roles": roles}
            for name, tok, ns, roles in entries
        ]
    }
    path.write_bytes(orjson.dumps(doc))
    return path


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    t = Tokens(
        a=secrets.token_urlsafe(24),
        b=secrets.token_urlsafe(24),
        a_reader=secrets.token_urlsafe(24),
        a_admin=secrets.token_urlsafe(24),
        b_admin=secrets.token_urlsafe(24),
        admin=secrets.token_urlsafe(24),
        path=tmp_path / "tokens.json",
    )
    write_tokens_file(
        t.path,
        [
            ("tenant-a", t.a, [NS_A], ["read", "write"]),
            ("tenant-b", t.b, [NS_B], ["read", "write"]),
            ("tenant-a-reader", t.a_reader, [NS_A], ["read"]),
            ("tenant-a-admin", t.a_admin, [NS_A], ["read", "write", "admin"]),
            ("tenant-b-admin", t.b_admin, [NS_B], ["read", "write", "admin"]),
            ("admin", t.admin, ["*"], ["read", "write", "admin"]),
        ],
    )
    return t


@pytest.fixture
def auth_settings(embedded_settings: Settings, tokens: Tokens, tmp_path: Path) -> Settings:
    # Encryption at rest on: the isolation rules hold with it, and its key routes answer.
    key_file = tmp_path / "encryption-keys"
    key_file.write_text(new_kek_line("k1") + "\n")
    return embedded_settings.model_copy(
        update={
            "auth_enabled": True,
            "auth_tokens_file": tokens.path,
            "encryption_key_file": key_file,
        }
    )


AppFactory = Callable[..., Any]


@pytest.fixture
async def make_http(
    auth_settings: Settings,
) -> AsyncIterator[Callable[..., Any]]:
    """Start the real app on a loopback socket with settings overrides."""
    clients: list[TestClient[Any, Any]] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(
            TestServer(create_app(auth_settings.model_copy(update=overrides)))
        )
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
