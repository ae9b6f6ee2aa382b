"""Rate limits, quotas, request timeouts and the loopback-only default, on the real app."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from memstore.core.errors import ConfigurationError
from memstore.core.payload_codec import new_kek_line
from memstore.core.settings import Settings
from memstore.server.security import check_bind
from tests.security.conftest import NS_A, NS_B, Tokens
from tests.support.procs import free_port, wait_http

Client = TestClient[Any, Any]
A = f"/v1/namespaces/{NS_A}"


async def test_rate_limit_is_per_token_with_retry_after(make_http: Any, tokens: Tokens) -> None:
    # 0.01 tokens/s: after the burst of 3 nothing refills within the test.
    http: Client = await make_http(rate_limit_rps=0.01, rate_limit_burst=3)
    h = tokens.header(tokens.a)
    for _ in range(3):
        assert (await http.get(f"{A}/entities", headers=h)).status == 200
    limited = await http.get(f"{A}/entities", headers=h)
    assert limited.status == 429
    body = await limited.json()
    assert body["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Another token has its own bucket; probes are never limited.
    assert (
        await http.get(f"/v1/namespaces/{NS_B}/entities", headers=tokens.header(tokens.b))
    ).status == 200
    assert (await http.get("/livez")).status == 200
    assert (await http.get("/readyz")).status == 200


async def test_entity_quota_refuses_creates_not_replaces(make_http: Any, tokens: Tokens) -> None:
    http: Client = await make_http(quota_max_entities=3, quota_refresh_seconds=3600)
    h = tokens.header(tokens.a)
    for i in range(3):
        resp = await http.put(f"{A}/entities/note/n{i}", json={"data": {"i": i}}, headers=h)
        assert resp.status == 201, await resp.text()
    full = await http.put(f"{A}/entities/note/n3", json={"data": {}}, headers=h)
    assert full.status == 403
    body = await full.json()
    assert body["code"] == "quota_exceeded"
    assert body["details"] == {"quota": "entities", "limit": 3, "used": 3}
    assert (await http.get(f"{A}/entities/note/n3", headers=h)).status == 404
    # Replacing an existing entity is not growth.
    replaced = await http.put(f"{A}/entities/note/n0", json={"data": {"v": 2}}, headers=h)
    assert replaced.status == 200
    # Other namespaces have their own quota.
    other = await http.put(
        f"/v1/namespaces/{NS_B}/entities/note/n9",
        json={"data": {}},
        headers=tokens.header(tokens.b),
    )
    assert other.status == 201
    # A delete makes room (the usage is read again after it).
    assert (await http.delete(f"{A}/entities/note/n1", headers=h)).status == 204
    again = await http.put(f"{A}/entities/note/n3", json={"data": {}}, headers=h)
    assert again.status == 201, await again.text()


async def test_concurrent_creates_do_not_overshoot_the_entity_quota(
    make_http: Any, tokens: Tokens
) -> None:
    http: Client = await make_http(quota_max_entities=5, quota_refresh_seconds=3600)
    h = tokens.header(tokens.a)
    results = await asyncio.gather(
        *(http.put(f"{A}/entities/note/c{i}", json={"data": {}}, headers=h) for i in range(20))
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(201) == 5
    assert statuses.count(403) == 15
    summary = await (await http.get(f"{A}/summary", headers=h)).json()
    assert summary["total_entities"] == 5


async def test_bytes_quota(make_http: Any, tokens: Tokens) -> None:
    http: Client = await make_http(quota_max_bytes=4000, quota_refresh_seconds=3600)
    h = tokens.header(tokens.a)
    chunk = {"text": "x" * 1000}
    accepted = 0
    for _ in range(10):
        resp = await http.post(
            f"{A}/conversations/c/messages", json={"messages": [chunk]}, headers=h
        )
        if resp.status == 403:
            body = await resp.json()
            assert body["code"] == "quota_exceeded"
            assert body["details"]["quota"] == "bytes"
            break
        assert resp.status == 201
        accepted += 1
    assert 1 <= accepted <= 3  # each append carries ~1 kB of payload (+ envelope)
    # After the quota refuses, deleting the conversation frees the bytes.
    assert (await http.delete(f"{A}/conversations/c", headers=h)).status == 204
    resp = await http.post(f"{A}/conversations/c/messages", json={"messages": [chunk]}, headers=h)
    assert resp.status == 201


async def test_the_bytes_quota_counts_payloads_as_written(
    make_http: Any, tokens: Tokens, tmp_path: Path
) -> None:
    """Compressed and encrypted at rest, a payload still counts its own size: zstd makes
    these messages ~30 times smaller in the store, and the quota admits no more of them."""
    kek = tmp_path / "kek"
    kek.write_text(new_kek_line("k1") + "\n")
    http: Client = await make_http(
        quota_max_bytes=10_000,
        quota_refresh_seconds=0,  # the exact usage is read before every write
        compression_min_bytes=512,
        encryption_key_file=kek,
    )
    h = tokens.header(tokens.a)
    chunk = {"text": "x" * 3000}
    accepted = 0
    for _ in range(10):
        resp = await http.post(
            f"{A}/conversations/c/messages", json={"messages": [chunk]}, headers=h
        )
        if resp.status == 403:
            body = await resp.json()
            assert body["details"]["quota"] == "bytes"
            assert body["details"]["used"] == 3 * len(orjson.dumps(chunk))
            break
        assert resp.status == 201
        accepted += 1
    assert accepted == 3
    overview = await (await http.get(f"{A}/analytics/overview", headers=h)).json()
    assert overview["logical_bytes"] == 3 * len(orjson.dumps(chunk))
    assert overview["stored_bytes"] * 10 < overview["logical_bytes"], overview


async def test_slow_body_is_cut_by_the_request_timeout(make_http: Any, tokens: Tokens) -> None:
    """A client that sends headers and then stalls gets a 504 JSON answer, not a held slot."""
    http: Client = await make_http(request_timeout_seconds=0.5)
    port = http.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"PUT {A}/entities/note/slow HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {tokens.a}\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"data":'
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    writer.close()
    assert head.startswith(b"HTTP/1.1 504"), head
    assert b"application/json" in head
    assert (
        await http.get(f"{A}/entities/note/slow", headers=tokens.header(tokens.a))
    ).status == 404


async def test_slow_body_is_cut_with_every_security_feature_off(make_http: Any) -> None:
    """The fast path (auth, rate limit and in-flight cap off) keeps the request timeout."""
    http: Client = await make_http(request_timeout_seconds=0.3, auth_enabled=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", http.server.port)
    writer.write(
        (
            f"PUT {A}/entities/note/slow HTTP/1.1\r\nHost: x\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"data":'
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    writer.close()
    assert head.startswith(b"HTTP/1.1 504"), head
    # The server goes on answering, and nothing was written.
    assert (await http.get(f"{A}/entities/note/slow")).status == 404


def test_no_auth_means_loopback_only(embedded_settings: Settings) -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(embedded_settings.model_copy(update={"host": host}))
    for host in ("0.0.0.0", "::", "10.1.2.3", "memstore.example"):
        with pytest.raises(ConfigurationError, match="MEMSTORE_ALLOW_INSECURE_BIND"):
            check_bind(embedded_settings.model_copy(update={"host": host}))
        check_bind(embedded_settings.model_copy(update={"host": host, "allow_insecure_bind": True}))
        check_bind(embedded_settings.model_copy(update={"host": host, "auth_enabled": True}))


def test_serve_refuses_a_public_bind_without_auth(tmp_path: Any) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "MEMSTORE_HOST": "0.0.0.0",
        "MEMSTORE_PORT": str(free_port()),
        "MEMSTORE_DATA_PATH": str(tmp_path / "m.db"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "memstore", "serve"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert b"refusing to listen on 0.0.0.0" in done.stderr


def test_serve_on_a_public_address_without_auth_when_explicitly_allowed(tmp_path: Any) -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "MEMSTORE_HOST": "0.0.0.0",
        "MEMSTORE_PORT": str(port),
        "MEMSTORE_DATA_PATH": str(tmp_path / "m.db"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "memstore", "serve", "--allow-insecure-bind"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/livez", proc=proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"non-loopback address with authentication disabled" in err


def test_serve_refuses_auth_without_a_usable_tokens_file(tmp_path: Any) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text(
        '{"tokens": [{"name": "x", "sha256": "nothex", "namespaces": ["*"], "roles": ["read"]}]}'
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "MEMSTORE_PORT": str(free_port()),
        "MEMSTORE_DATA_PATH": str(tmp_path / "m.db"),
        "MEMSTORE_AUTH_ENABLED": "true",
        "MEMSTORE_AUTH_TOKENS_FILE": str(bad),
    }
    done = subprocess.run(
        [sys.executable, "-m", "memstore", "serve"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert b"sha256 must be 64 hex digits" in done.stderr


async def stall(port: int, token: str, path: str) -> asyncio.StreamWriter:
    """Send a request's headers and half its body, then stall: a request held in flight."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"data":'
        ).encode()
    )
    await writer.drain()
    return writer


async def test_a_caller_cannot_hold_every_slot(make_http: Any, tokens: Tokens) -> None:
    http: Client = await make_http(max_inflight_per_caller=2)
    port = http.server.port
    assert port is not None
    h = tokens.header(tokens.a)
    stalled = [await stall(port, tokens.a, f"{A}/entities/note/s{i}") for i in range(2)]
    try:
        # The two stalled requests are in their handlers once the server has read them;
        # a third request of the same token is refused, another token is served.
        for _ in range(200):
            resp = await http.get(f"{A}/entities", headers=h)
            if resp.status == 429:
                break
            await asyncio.sleep(0.01)
        assert resp.status == 429
        assert (await resp.json())["code"] == "rate_limited"
        assert resp.headers["Retry-After"] == "1"
        other = await http.get(f"/v1/namespaces/{NS_B}/entities", headers=tokens.header(tokens.b))
        assert other.status == 200
    finally:
        for writer in stalled:
            writer.close()
    # Once the stalled clients are gone, their slots are free again.
    for _ in range(500):
        resp = await http.get(f"{A}/entities", headers=h)
        if resp.status == 200:
            break
        await asyncio.sleep(0.01)
    assert resp.status == 200
