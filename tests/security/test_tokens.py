"""The tokens file: parsing, hashing, scoping, reload on rotation, and the client side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient
from memstore.core.errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
)
from memstore.core.settings import Settings
from memstore.server.app import create_app
from memstore.server.auth import TokenStore, bearer_token, hash_token, parse_tokens
from tests.security.conftest import NS_A, NS_B, Tokens, write_tokens_file


def test_tokens_are_matched_by_hash_and_scoped(tokens: Tokens) -> None:
    store = TokenStore(tokens.path)
    a = store.authenticate(tokens.a)
    assert a is not None
    assert a.name == "tenant-a"
    assert a.allows_namespace(NS_A)
    assert not a.allows_namespace(NS_B)
    assert a.has_role("write")
    assert not a.has_role("admin")
    admin = store.authenticate(tokens.admin)
    assert admin is not None
    assert admin.allows_namespace("anything")
    assert store.authenticate(tokens.a + "x") is None
    assert store.authenticate(hash_token(tokens.a)) is None  # the hash is not the token
    assert store.authenticate("") is None
    # The file holds no token in clear.
    assert tokens.a not in tokens.path.read_text()
    assert tokens.a not in repr(store)


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be"),
        (b'{"tokens": [{"name": ""}]}', "name must be"),
        (b'{"tokens": [{"name": "x", "sha256": "ab"}]}', "64 hex digits"),
        (
            b'{"tokens": [{"name": "x", "sha256": "' + b"a" * 64 + b'", "namespaces": []}]}',
            "namespaces",
        ),
        (
            b'{"tokens": [{"name": "x", "sha256": "'
            + b"a" * 64
            + b'", "namespaces": ["*"], "roles": ["root"]}]}',
            "roles",
        ),
    ],
)
def test_bad_tokens_files_are_refused(doc: bytes, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse_tokens(doc)


def test_duplicate_names_are_refused() -> None:
    entry = b'{"name": "x", "sha256": "' + b"a" * 64 + b'", "namespaces": ["*"], "roles": ["read"]}'
    with pytest.raises(ConfigurationError, match="twice"):
        parse_tokens(b'{"tokens": [' + entry + b"," + entry + b"]}")


def test_rotation_is_picked_up_and_a_broken_file_keeps_the_old_tokens(
    tokens: Tokens, tmp_path: Path
) -> None:
    store = TokenStore(tokens.path)
    assert store.authenticate(tokens.a) is not None
    write_tokens_file(tokens.path, [("new", "new-token-value-123456", ["*"], ["read"])])
    os.utime(tokens.path, ns=(1, 1))  # a different stamp even within one mtime tick
    store.maybe_reload(now=10**9)
    assert store.authenticate(tokens.a) is None
    assert store.authenticate("new-token-value-123456") is not None
    tokens.path.write_text("{broken")
    store.maybe_reload(now=2 * 10**9)
    assert store.authenticate("new-token-value-123456") is not None


def test_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("Bearer a b") is None
    assert bearer_token(None) is None


async def test_a_route_outside_the_table_needs_admin(
    tokens: Tokens, auth_settings: Settings
) -> None:
    """A route added without a row of the route table (so without a role) is refused to
    every token but an admin one: fail closed."""
    app = create_app(auth_settings)

    async def extra(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get(
        "/v1/namespaces/{namespace}/extra", extra, name="somethingNew", allow_head=False
    )
    async with TestClient(TestServer(app)) as http:
        path = "/v1/namespaces/tenant-a/extra"
        for token in (tokens.a, tokens.a_reader):
            resp = await http.get(path, headers=tokens.header(token))
            assert resp.status == 403, await resp.text()
        resp = await http.get(path, headers=tokens.header(tokens.admin))
        assert resp.status == 200, await resp.text()


async def test_client_sends_the_token_and_maps_the_errors(
    make_http: Any, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    http: TestClient[Any, Any] = await make_http(
        rate_limit_rps=0.01, rate_limit_burst=4, quota_max_entities=1
    )
    url = str(http.make_url("/")).rstrip("/")
    async with MemoryClient(url, namespace=NS_A) as anonymous:
        with pytest.raises(AuthenticationError):
            await anonymous.get_entity_types()
    monkeypatch.setenv("MEMSTORE_TOKEN", tokens.a)
    async with MemoryClient(url, namespace=NS_A) as client:
        assert tokens.a not in repr(client)
        await client.save_entity("note", "one", {"v": 1})  # 1
        with pytest.raises(QuotaExceededError):
            await client.save_entity("note", "two", {"v": 2})  # 2
        with pytest.raises(PermissionDeniedError):
            await client.for_namespace(NS_B).get_entity_types()  # 3
        with pytest.raises(PermissionDeniedError):
            await client.clear_cache()  # admin only (4)
        with pytest.raises(RateLimitedError) as limited:
            await client.get_entity_types()  # 5: over the burst
        assert limited.value.retry_after >= 1


async def test_a_wrong_method_on_an_open_path_is_a_405_without_a_token(
    make_http: Any, tokens: Tokens
) -> None:
    http: TestClient[Any, Any] = await make_http()
    for method, path in (("TRACE", "/livez"), ("POST", "/readyz"), ("DELETE", "/metrics")):
        resp = await http.request(method, path)
        assert resp.status == 405, await resp.text()
        assert resp.headers["Allow"] == "GET"
        assert (await resp.json())["code"] == "method_not_allowed"
    # Elsewhere a caller without a token learns nothing, not even which methods exist.
    for method, path in (("TRACE", "/v1/metrics"), ("PATCH", "/v1/namespaces/x/entities/t/i")):
        resp = await http.request(method, path)
        assert resp.status == 401, await resp.text()
        assert "Allow" not in resp.headers
        resp = await http.request(method, path, headers=tokens.header(tokens.a))
        assert resp.status == 405
        assert resp.headers["Allow"]
