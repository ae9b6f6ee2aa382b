"""Read-your-writes on ``GET .../entities/{type}/{id}``: the ``Memstore-Min-Version`` and
``Cache-Control: no-cache`` request headers, and ``MemoryClient`` sending them by itself.

The app's cache is made stale on purpose by writing behind it (straight to the backend,
as another replica would before its invalidation arrives)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient, VersionTracker
from memstore.core.records import JSONObject
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.server.app import create_app
from memstore.server.state import MANAGER
from tests.api.conftest import SpecChecker
from tests.api.test_http_api import ENTITY, NS, call

Client = TestClient[Any, Any]
PATH = f"{NS}/entities/doc/a"


def manager_of(http: Client) -> DistributedMemoryManager:
    app = http.app
    assert app is not None
    manager: DistributedMemoryManager = app[MANAGER]
    return manager


async def write_behind_the_cache(http: Client, data: JSONObject) -> None:
    await manager_of(http).backend.save_entity("agent", "doc", "a", data)


async def cache_figures(http: Client) -> dict[str, int]:
    resp = await http.get("/v1/metrics")
    cache: dict[str, int] = (await resp.json())["cache"]
    return cache


async def stale_cache(http: Client, spec: SpecChecker) -> None:
    """The app caches version 1 of doc/a; the store holds version 2."""
    await call(http, spec, "PUT", ENTITY, PATH, expect=201, json={"data": {"v": 1}})
    await call(http, spec, "GET", ENTITY, PATH, expect=200)
    await write_behind_the_cache(http, {"v": 2})
    cached = await call(http, spec, "GET", ENTITY, PATH, expect=200)
    assert cached["version"] == 1


async def test_min_version_skips_an_older_cached_copy(http: Client, spec: SpecChecker) -> None:
    await stale_cache(http, spec)
    same = await call(
        http, spec, "GET", ENTITY, PATH, expect=200, headers={"Memstore-Min-Version": "1"}
    )
    assert same["version"] == 1  # the cached copy is new enough for this reader
    before = await cache_figures(http)
    fresh = await http.get(PATH, headers={"Memstore-Min-Version": "2"})
    assert fresh.status == 200
    assert fresh.headers["ETag"] == '"2"'
    assert (await fresh.json())["data"] == {"v": 2}
    after = await cache_figures(http)
    assert after["min_version_refused"] == before["min_version_refused"] + 1
    # The fresh copy is what everyone reads from the cache now.
    again = await call(http, spec, "GET", ENTITY, PATH, expect=200)
    assert again["version"] == 2
    # Not a precondition: a floor above the stored version answers the stored state.
    above = await call(
        http, spec, "GET", ENTITY, PATH, expect=200, headers={"Memstore-Min-Version": "7"}
    )
    assert above["version"] == 2
    await call(
        http, spec, "GET", ENTITY, f"{NS}/entities/doc/none", expect=404,
        headers={"Memstore-Min-Version": "3"},
    )  # fmt: skip


@pytest.mark.parametrize("value", ["no-cache", "No-Cache", "max-age=0, no-cache", "no-cache=x"])
async def test_cache_control_no_cache_reads_the_backend(
    http: Client, spec: SpecChecker, value: str
) -> None:
    await stale_cache(http, spec)
    before = await cache_figures(http)
    fresh = await call(
        http, spec, "GET", ENTITY, PATH, expect=200, headers={"Cache-Control": value}
    )
    assert fresh["version"] == 2
    assert (await cache_figures(http))["bypasses"] == before["bypasses"] + 1


async def test_other_cache_control_directives_are_ignored(http: Client, spec: SpecChecker) -> None:
    await stale_cache(http, spec)
    for value in ("max-age=0", "no-store", "no-cachex", ""):
        cached = await call(
            http, spec, "GET", ENTITY, PATH, expect=200, headers={"Cache-Control": value}
        )
        assert cached["version"] == 1, value


@pytest.mark.parametrize(
    "value", ["0", "-1", "abc", "", "1.0", '"3"', "3, 4", "1" * 19, "0x10", "+3", "٣"]
)
async def test_a_bad_min_version_header_is_a_400_naming_it(
    http: Client, spec: SpecChecker, value: str
) -> None:
    await call(http, spec, "PUT", ENTITY, PATH, expect=201, json={"data": {"v": 1}})
    body = await call(
        http, spec, "GET", ENTITY, PATH, expect=400, headers={"Memstore-Min-Version": value}
    )
    assert body["code"] == "invalid_input"
    assert body["details"] == {"field": "Memstore-Min-Version"}
    assert "Memstore-Min-Version" in body["message"]


async def test_the_document_describes_both_headers(http: Client) -> None:
    doc = await (await http.get("/openapi.json")).json()
    params = {
        p["name"]: p for p in doc["paths"][ENTITY]["get"]["parameters"] if p["in"] == "header"
    }
    assert params["Memstore-Min-Version"]["schema"]["pattern"] == "^[1-9][0-9]{0,17}$"
    assert "no-cache" in params["Cache-Control"]["description"]


# -- MemoryClient, across two replicas ---------------------------------------------
# Two apps sharing one embedded file (MEMSTORE_EMBEDDED_SHARED) are two replicas without
# an invalidation bus, as on MongoDB: each serves its cache until the TTL (long here).


@pytest.fixture
async def replicas(api_settings: Settings) -> AsyncIterator[tuple[Client, Client]]:
    settings = api_settings.model_copy(update={"embedded_shared": True, "cache_ttl_seconds": 300.0})
    async with (
        TestClient(TestServer(create_app(settings))) as a,
        TestClient(TestServer(create_app(settings))) as b,
    ):
        yield a, b


def url_of(http: Client) -> str:
    return str(http.make_url("/")).rstrip("/")


async def test_clients_sharing_a_tracker_read_their_writes_on_another_replica(
    replicas: tuple[Client, Client],
) -> None:
    a, b = replicas
    tracker = VersionTracker()
    async with (
        MemoryClient(url_of(a), "agent", versions=tracker) as on_a,
        MemoryClient(url_of(b), "agent", versions=tracker) as on_b,
        MemoryClient(url_of(b), "agent") as alone_on_b,  # its own tracker
    ):
        await on_a.save_entity("doc", "a", {"v": 1})
        first = await on_b.get_entity("doc", "a")  # B caches version 1
        assert first is not None
        for v in range(2, 5):
            written = await on_a.save_entity("doc", "a", {"v": v})
            # A client that saw nothing of the write is served B's cached copy ...
            old = await alone_on_b.get_entity("doc", "a")
            assert old is not None
            assert old.version < written.version
            # ... one that shares the writer's tracker is not, and B caches the new one.
            read = await on_b.get_entity("doc", "a")
            assert read is not None
            assert (read.version, read.data) == (written.version, {"v": v})
        figures = await cache_figures(b)
        assert figures["min_version_refused"] == 3


async def test_a_delete_through_one_replica_is_not_undone_by_another(
    replicas: tuple[Client, Client],
) -> None:
    a, b = replicas
    tracker = VersionTracker()
    async with (
        MemoryClient(url_of(a), "agent", versions=tracker) as on_a,
        MemoryClient(url_of(b), "agent", versions=tracker) as on_b,
        MemoryClient(url_of(b), "agent") as alone_on_b,
    ):
        # A version the client knew: the next read asks for one past it.
        await on_a.save_entity("doc", "known", {"v": 1})
        assert await on_b.get_entity("doc", "known") is not None  # cached on B
        assert await on_a.delete_entity("doc", "known")
        assert await alone_on_b.get_entity("doc", "known") is not None  # B's stale copy
        assert await on_b.get_entity("doc", "known") is None
        assert tracker.floor(("agent", "doc", "known")) == 2
        # That read found nothing: B dropped its stale copy for readers without a token.
        assert await alone_on_b.get_entity("doc", "known") is None

        # A version the client never saw (another writer made it): no number bounds it.
        await manager_of(b).save_entity("doc", "unseen", {"v": 1})
        assert await manager_of(b).get_entity("doc", "unseen") is not None  # cached on B
        assert await on_a.delete_entity("doc", "unseen")
        before = await cache_figures(b)
        assert await on_b.get_entity("doc", "unseen") is None
        assert (await cache_figures(b))["bypasses"] == before["bypasses"] + 1
        # The bypassing read found nothing: B dropped its stale copy for everyone.
        assert await alone_on_b.get_entity("doc", "unseen") is None


async def test_the_client_passes_the_callers_own_conditions(
    http: Client, remote: MemoryClient
) -> None:
    await remote.save_entity("doc", "a", {"v": 1})
    await remote.get_entity("doc", "a")  # cached
    await write_behind_the_cache(http, {"v": 2})
    cached = await remote.get_entity("doc", "a")
    assert cached is not None
    assert cached.version == 1
    fresh = await remote.get_entity("doc", "a", min_version=2)
    assert fresh is not None
    assert fresh.version == 2
    await write_behind_the_cache(http, {"v": 3})
    bypassed = await remote.get_entity("doc", "a", use_cache=False)
    assert bypassed is not None
    assert bypassed.version == 3


async def test_namespace_views_share_the_tracker(remote: MemoryClient) -> None:
    other = remote.for_namespace("other")
    assert other.versions is remote.versions
    written = await other.save_entity("doc", "a", {"v": 1})
    assert remote.versions.floor(("other", "doc", "a")) == written.version
    assert remote.versions.floor(("agent", "doc", "a")) is None
