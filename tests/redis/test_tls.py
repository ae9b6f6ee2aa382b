"""Redis over TLS and as an ACL user: standalone with the server certificate verified,
mutual TLS, a Redis Cluster over TLS, the invalidation bus over TLS between two
replicas, and clear errors for wrong credentials, certificates and settings."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError
from redis.exceptions import NoPermissionError

from memstore.backends.redis import RedisMemoryBackend
from memstore.cli import main
from memstore.client import MemoryClient
from memstore.core.errors import BackendUnavailableError, ConfigurationError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.server.app import create_app
from redis import Redis as SyncRedis
from tests.redis.test_invalidation import running_service
from tests.servers.redis import ACL_USER, LocalRedis
from tests.support.tls import TlsFiles, make_tls_files


@pytest.mark.parametrize(
    "fixture", ["redis_tls_settings", "redis_mtls_settings", "redis_tls_cluster_settings"]
)
async def test_backend_over_tls_as_acl_user(fixture: str, request: pytest.FixtureRequest) -> None:
    settings: Settings = request.getfixturevalue(fixture)
    backend = RedisMemoryBackend(settings)
    await backend.connect()
    try:
        assert backend.describe()["tls"] is True
        saved = await backend.save_entity("tlsns", "doc", "a", {"x": 1})
        assert saved.version == 1
        loaded = await backend.load_entity("tlsns", "doc", "a")
        assert loaded is not None and loaded.data == {"x": 1}
        assert await backend.ping()
    finally:
        await backend.close()


async def wait_for_invalidation(manager: DistributedMemoryManager, seen: int) -> None:
    """Poll the cache counter; the bound only keeps a broken build from hanging."""
    for _ in range(1500):
        if manager._shared.cache.stats.invalidations > seen:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the invalidation never arrived")


@pytest.mark.parametrize("fixture", ["redis_mtls_settings", "redis_tls_cluster_settings"])
async def test_invalidation_bus_over_tls(fixture: str, request: pytest.FixtureRequest) -> None:
    """Two replicas over TLS as the ACL user: a write on one drops the other's cached copy
    (the subscriber's own connections use TLS and the ACL user too)."""
    settings: Settings = request.getfixturevalue(fixture)
    settings = settings.model_copy(update={"cache_ttl_seconds": 300.0})
    ns = f"inv{uuid.uuid4().hex[:8]}"
    a = DistributedMemoryManager(settings=settings, namespace=ns)
    b = DistributedMemoryManager(settings=settings, namespace=ns)
    await a.start()
    await b.start()
    try:
        for m in (a, b):
            backend = m.backend
            assert isinstance(backend, RedisMemoryBackend)
            assert backend.invalidation_bus is not None
            await asyncio.wait_for(backend.invalidation_bus.subscribed.wait(), 15)
        await a.save_entity("doc", "k", {"v": 0})
        assert (await b.load_entity("doc", "k")) == {"v": 0}  # cached in B now
        for v in range(1, 4):
            seen = b._shared.cache.stats.invalidations
            await a.save_entity("doc", "k", {"v": v})
            await wait_for_invalidation(b, seen)
            assert (await b.load_entity("doc", "k")) == {"v": v}
    finally:
        await a.close()
        await b.close()


# redis-py closes a connection whose handshake reply was an error without waiting for the
# close to finish (read_response: disconnect(nowait=True)). Over TLS that close is a TLS
# shutdown still in flight when the test's event loop ends, and asyncio then reports the
# socket as an unclosed transport. A running service's loop finishes the close.
TLS_CLOSE_IN_FLIGHT = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning"
)


@TLS_CLOSE_IN_FLIGHT
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"redis_password": SecretStr("wrong")}, "invalid username-password pair"),
        ({"redis_username": "nobody"}, "invalid username-password pair"),
        # TLS 1.3: the server's alert may arrive before or after it closes the socket
        (
            {"redis_tls_cert_file": None, "redis_tls_key_file": None},
            "certificate required|Connection reset",
        ),
        ({"redis_tls_ca_file": None}, "certificate verify failed"),
    ],
    ids=["wrong-password", "wrong-username", "no-client-certificate", "untrusted-server"],
)
async def test_refused_connection_is_a_clear_503(
    redis_mtls_settings: Settings, change: dict[str, Any], reason: str
) -> None:
    """Wrong credentials or certificates: the manager raises BackendUnavailableError with
    Redis's (or TLS's) reason, the HTTP API answers 503 JSON with it, and the password
    shows nowhere."""
    settings = redis_mtls_settings.model_copy(update={"redis_retries": 0, **change})
    password = redis_mtls_settings.redis_password
    assert password is not None
    manager = DistributedMemoryManager(settings=settings, namespace="tls")
    with pytest.raises(BackendUnavailableError) as info:
        await manager.save_entity("doc", "a", {"x": 1})
    assert re.search(reason, info.value.message)
    assert password.get_secret_value() not in repr(info.value.to_dict())
    await manager.close()

    async with TestClient(TestServer(create_app(settings))) as http:
        resp = await http.put("/v1/namespaces/tls/entities/doc/a", json={"data": {"x": 1}})
        assert resp.status == 503
        body: dict[str, Any] = await resp.json()
        assert body["code"] == "backend_unavailable"
        assert re.search(reason, body["message"])
        assert password.get_secret_value() not in await resp.text()
        assert (await http.get("/readyz")).status == 503


@TLS_CLOSE_IN_FLIGHT
async def test_plain_client_is_refused_by_a_tls_server(redis_tls_settings: Settings) -> None:
    settings = redis_tls_settings.model_copy(
        update={"redis_tls": False, "redis_tls_ca_file": None, "redis_retries": 0}
    )
    backend = RedisMemoryBackend(settings)
    with pytest.raises(BackendUnavailableError):
        await backend.connect()


def test_acl_user_is_really_limited(
    redis_tls_server: LocalRedis, redis_tls_files: TlsFiles, redis_acl_password: str
) -> None:
    """The ACL user the TLS tests run as cannot touch keys outside the test prefixes nor
    run admin commands: the tests above prove memstore needs no more than that."""
    client = SyncRedis(
        host="127.0.0.1",
        port=redis_tls_server.port,
        username=ACL_USER,
        password=redis_acl_password,
        ssl=True,
        ssl_ca_certs=str(redis_tls_files.ca),
        socket_timeout=5,
    )
    try:
        client.set("t-allowed", "1")
        with pytest.raises(NoPermissionError):
            client.set("other", "1")
        with pytest.raises(NoPermissionError):
            client.flushall()
        with pytest.raises(NoPermissionError):
            client.config_get("*")
    finally:
        client.close()


# -- settings -----------------------------------------------------------------------------


def test_tls_settings_from_env(monkeypatch: pytest.MonkeyPatch, redis_tls_files: TlsFiles) -> None:
    monkeypatch.setenv("MEMORY_TYPE", "redis")
    monkeypatch.setenv("REDIS_USERNAME", "memstore")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-value")
    monkeypatch.setenv("MEMSTORE_REDIS_TLS", "true")
    monkeypatch.setenv("MEMSTORE_REDIS_TLS_CA_FILE", str(redis_tls_files.ca))
    monkeypatch.setenv("MEMSTORE_REDIS_TLS_CERT_FILE", str(redis_tls_files.client_cert))
    monkeypatch.setenv("MEMSTORE_REDIS_TLS_KEY_FILE", str(redis_tls_files.client_key))
    monkeypatch.setenv("MEMSTORE_REDIS_TLS_VERIFY_HOSTNAME", "false")
    s = Settings()
    assert s.redis_username == "memstore"
    assert s.redis_tls_enabled
    assert s.redis_tls_ca_file == redis_tls_files.ca
    assert s.redis_tls_cert_file == redis_tls_files.client_cert
    assert s.redis_tls_key_file == redis_tls_files.client_key
    assert not s.redis_tls_verify_hostname
    assert "s3cret-value" not in repr(s)
    backend = RedisMemoryBackend(s)
    assert "s3cret-value" not in repr(backend) + str(backend.describe())
    # the other spelling of the user name, and rediss:// turning TLS on
    monkeypatch.delenv("REDIS_USERNAME")
    monkeypatch.setenv("MEMSTORE_REDIS_USERNAME", "other")
    monkeypatch.setenv("MEMSTORE_REDIS_TLS", "false")
    monkeypatch.setenv("MEMSTORE_REDIS_CLUSTER_NODES", "rediss://a:1,b:2")
    s = Settings()
    assert s.redis_username == "other"
    assert s.redis_tls_enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEMSTORE_REDIS_TLS_CA_FILE": "{ca}"}, "MEMSTORE_REDIS_TLS is off"),
        (
            {"MEMSTORE_REDIS_TLS": "true", "MEMSTORE_REDIS_TLS_CERT_FILE": "{cert}"},
            "go together",
        ),
        (
            {"MEMSTORE_REDIS_TLS": "true", "MEMSTORE_REDIS_TLS_CA_FILE": "/nonexistent/ca.crt"},
            "does not point to a file",
        ),
    ],
    ids=["file-without-tls", "cert-without-key", "missing-file"],
)
def test_inconsistent_tls_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    redis_tls_files: TlsFiles,
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(
            name, value.format(ca=redis_tls_files.ca, cert=redis_tls_files.client_cert)
        )
    with pytest.raises(ValidationError, match=message):
        Settings(memory_type="redis")


def test_serve_with_bad_tls_settings_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`memstore serve` with TLS files but TLS off, and with a CA file that is no PEM:
    one line naming the setting, no traceback."""
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    monkeypatch.setenv("MEMORY_TYPE", "redis")
    monkeypatch.setenv("MEMSTORE_REDIS_TLS_CA_FILE", str(not_pem))
    runner = CliRunner()
    result = runner.invoke(main, ["serve", "--port", "0"])
    assert result.exit_code != 0
    assert "MEMSTORE_REDIS_TLS is off" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1

    monkeypatch.setenv("MEMSTORE_REDIS_TLS", "true")
    result = runner.invoke(main, ["serve", "--port", "0"])
    assert result.exit_code != 0
    # after the JSON log lines of the start, the error: one line
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: configuration_error: MEMSTORE_REDIS_TLS_CA_FILE: cannot load")
    assert "Traceback" not in result.output


async def test_bad_client_key_is_a_configuration_error(
    redis_mtls_settings: Settings, tmp_path: Path
) -> None:
    """A key that does not belong to the certificate: refused before any connection."""
    other = make_tls_files(tmp_path / "other")
    settings = redis_mtls_settings.model_copy(update={"redis_tls_key_file": other.client_key})
    backend = RedisMemoryBackend(settings)
    with pytest.raises(ConfigurationError, match="MEMSTORE_REDIS_TLS_KEY_FILE"):
        await backend.connect()


async def test_two_service_processes_over_mutual_tls(
    redis_mtls_server: LocalRedis,
    redis_mtls_settings: Settings,
    redis_tls_files: TlsFiles,
    redis_acl_password: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two real ``memstore serve`` processes configured only by environment variables
    (as the operator sets them) on a mutual-TLS Redis as the ACL user: a write through one
    is read fresh through the other, so commands and the invalidation bus both work."""
    env = {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_mtls_server.port),
        "REDIS_PREFIX": str(redis_mtls_settings.redis_prefix),
        "REDIS_USERNAME": ACL_USER,
        "REDIS_PASSWORD": redis_acl_password,
        "MEMSTORE_REDIS_TLS": "true",
        "MEMSTORE_REDIS_TLS_CA_FILE": str(redis_tls_files.ca),
        "MEMSTORE_REDIS_TLS_CERT_FILE": str(redis_tls_files.client_cert),
        "MEMSTORE_REDIS_TLS_KEY_FILE": str(redis_tls_files.client_key),
        "MEMSTORE_CACHE_TTL_SECONDS": "300",
    }
    base = tmp_path_factory.mktemp("two-tls-services")
    with (
        running_service(base / "a", env) as svc_a,
        running_service(base / "b", env) as svc_b,
    ):
        async with (
            MemoryClient(svc_a.url, namespace="agent") as ca,
            MemoryClient(svc_b.url, namespace="agent") as cb,
        ):
            assert await ca.ping()
            assert await cb.ping()
            await ca.save_entity("doc", "p", {"v": 1})
            assert (await cb.load_entity("doc", "p")) == {"v": 1}  # cached in B
            for v in range(2, 4):
                seen = (await cb.get_metrics())["cache"]["invalidations"]
                await ca.save_entity("doc", "p", {"v": v})
                for _ in range(750):
                    if (await cb.get_metrics())["cache"]["invalidations"] > seen:
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("B never got the invalidation")
                assert (await cb.load_entity("doc", "p")) == {"v": v}
        for svc in (svc_a, svc_b):
            assert redis_acl_password not in svc.log_path.read_text()
