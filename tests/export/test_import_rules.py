"""What an import promises: a damaged dump changes nothing, importing twice gives the same
state, a namespace holding data is refused (or replaced), and no reader on any replica
sees a half-imported namespace."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.core.dump import FORMAT_VERSION as FORMAT
from memstore.core.errors import DumpInvalidError, NamespaceImportingError, NamespaceNotEmptyError
from memstore.core.records import EntityRecord
from memstore.core.settings import Settings
from memstore.memory import export
from memstore.memory.manager import DistributedMemoryManager
from tests.export.conftest import BACKENDS, fill


async def dump_of(view: DistributedMemoryManager) -> list[bytes]:
    return [line async for line in view.export_namespace()]


async def chunks_of(lines: list[bytes]) -> AsyncIterator[bytes]:
    for line in lines:
        yield line


def records(lines: list[bytes]) -> list[bytes]:
    return lines[1:]


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_damaged_dump_changes_nothing(
    backend_name: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(store_settings("embedded", "a")).for_namespace("src")
    await fill(source)
    lines = await dump_of(source)
    target = managers(store_settings(backend_name, "b")).for_namespace("dst")
    tampered = list(lines)
    tampered[3] = tampered[3].replace(b'"version":1', b'"version":9')
    assert tampered[3] != lines[3]
    for bad, problem in [
        (tampered, "checksum mismatch"),
        (lines[:-1], "no trailer"),
        ([*lines[:5], *lines[6:]], "checksum mismatch"),  # a record left out
        ([lines[0], lines[2], lines[1], *lines[3:]], "checksum mismatch"),  # reordered
        ([b'{"kind":"manifest","format":"other"}\n', *lines[1:]], "is this an export dump"),
        ([*lines, b'{"kind":"entity"}\n'], "data after the trailer"),
        (
            [
                lines[0].replace(
                    b'"format_version":%d' % FORMAT, b'"format_version":%d' % (FORMAT + 1)
                ),
                *lines[1:],
            ],
            "newer",
        ),
    ]:
        with pytest.raises(DumpInvalidError) as caught:
            await target.import_namespace(chunks_of(bad))
        assert problem in caught.value.message
    summary = await target.get_memory_summary_data()
    assert summary.total_entities == summary.conversations == summary.total_tool_uses == 0
    assert await target.import_marker() is None
    assert (await target.read_changes()).last_position == 0


async def test_importing_twice_gives_the_same_state(
    backend_name: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(store_settings("embedded", "a")).for_namespace("src")
    await fill(source)
    lines = await dump_of(source)
    target = managers(store_settings(backend_name, "b")).for_namespace("dst")
    await target.import_namespace(chunks_of(lines))
    once = records(await dump_of(target))
    assert once == records(lines)
    # again, replacing: the same state
    result = await target.import_namespace(chunks_of(lines), replace=True)
    assert result.replaced
    assert records(await dump_of(target)) == once
    # an import that died half-way left its marker: running it again finishes it
    # (no replace needed) and the namespace is readable again
    await target.set_import_marker({"started_at": 0.0})
    await target.import_namespace(chunks_of(lines))
    assert await target.import_marker() is None
    assert records(await dump_of(target)) == once


async def test_a_namespace_holding_data_is_refused_unless_replaced(
    backend_name: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(store_settings("embedded", "a")).for_namespace("src")
    await fill(source)
    lines = await dump_of(source)
    target = managers(store_settings(backend_name, "b")).for_namespace("dst")
    await target.save_entity("other", "keep-me", {"x": 1})
    await target.save_entity("other", "keep-me", {"x": 2})
    await target.save_entity("doc", "d0", {"target's": "own"})  # a key the dump holds too
    await target.append_messages([{"old": True}], conversation_id="old-conversation")
    await target.save_conversation_history([{"new": True}], "old-conversation")
    with pytest.raises(NamespaceNotEmptyError):
        await target.import_namespace(chunks_of(lines))
    assert await target.get_entity("other", "keep-me") is not None
    assert await target.get_entity("user", "u001") is None
    await target.import_namespace(chunks_of(lines), replace=True)
    # entities, conversations and history are the dump's, exactly; of the target's own
    # history only the tombstone holding the numbering of its deleted key stays
    assert await target.get_entity("other", "keep-me") is None
    again = records(await dump_of(target))
    (left,) = [x for x in again if b'"id":"keep-me"' in x]
    assert orjson.loads(left)["kind"] == "entity_version"
    assert [x for x in again if x != left][:-1] == records(lines)[:-1]
    (tombstone,) = (await target.list_entity_versions("other", "keep-me")).items
    assert (tombstone.version, tombstone.deleted) == (2, True)
    assert (await target.list_conversation_revisions("old-conversation")).items == []
    d0 = (await target.list_entity_versions("doc", "d0")).items
    assert [(v.version, v.deleted, v.data) for v in d0] == [
        (2, False, {"body": "second version", "$k.y": {"a.b": 2**60}}),
        (1, False, {"body": "x" * 200, "n": [0, 1.5, None, True]}),
    ]
    saved = await target.save_entity("other", "keep-me", {"x": 3})
    assert saved.version == 3


class _PausingBackend:
    """Makes a backend's ``import_entity`` wait, after ``after`` calls, until released."""

    def __init__(self, backend: DistributedMemoryBackend, after: int) -> None:
        self.paused = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0
        original = backend.import_entity

        async def import_entity(namespace: str, record: EntityRecord) -> None:
            self.calls += 1
            if self.calls > after:
                self.paused.set()
                await self.release.wait()
            await original(namespace, record)

        backend.import_entity = import_entity  # type: ignore[method-assign]


@pytest.mark.parametrize("replica_backend", ["redis", "redis_cluster", "mongodb"])
async def test_no_replica_sees_a_half_imported_namespace(
    replica_backend: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(store_settings("embedded", "a")).for_namespace("src")
    await fill(source)
    lines = await dump_of(source)
    expected = dataclasses.replace(await source.get_memory_summary_data(), namespace="dst")

    shared = store_settings(replica_backend, "shared")
    backend = DistributedMemoryFactory.create_memory_backend(shared)
    pause = _PausingBackend(backend, after=5)
    importer = DistributedMemoryManager(settings=shared, namespace="dst", backend=backend)
    reader = managers(shared).for_namespace("dst")  # another replica: its own manager
    seen: list[Any] = []
    refused = 0
    stop = asyncio.Event()

    async def read_all_the_time() -> None:
        nonlocal refused
        while not stop.is_set():
            try:
                seen.append(await reader.get_memory_summary_data())
            except NamespaceImportingError:
                refused += 1
            await asyncio.sleep(0.02)

    try:
        readers = asyncio.create_task(read_all_the_time())
        importing = asyncio.create_task(importer.import_namespace(chunks_of(lines)))
        await asyncio.wait_for(pause.paused.wait(), 30)
        # half-way: the other replica refuses, this one too (outside the import's task)
        with pytest.raises(NamespaceImportingError):
            await reader.get_entity("user", "u000")
        with pytest.raises(NamespaceImportingError):
            await importer.list_entities("user")
        # other namespaces are served
        assert await reader.for_namespace("elsewhere").get_entity("user", "u000") is None
        pause.release.set()
        await asyncio.wait_for(importing, 60)
        # readable again everywhere within the marker refresh
        for _ in range(100):
            with contextlib.suppress(NamespaceImportingError):
                if (await reader.get_memory_summary_data()) == expected:
                    break
            await asyncio.sleep(0.05)
        stop.set()
        await readers
    finally:
        await importer.close()
    assert refused > 0
    complete = [s for s in seen if s.total_entities]
    partial = [s for s in complete if s != expected]
    assert not partial, partial[0]
    assert all(s.total_entities == s.conversations == 0 or s == expected for s in seen)
    assert await reader.get_memory_summary_data() == expected


async def test_the_http_api_answers_409_while_importing(
    store_settings: Callable[[str, str], Settings],
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from memstore.server.app import create_app
    from memstore.server.state import MANAGER

    app = create_app(store_settings("embedded", "http"))
    async with TestClient(TestServer(app)) as http:
        manager = app[MANAGER].for_namespace("busy")
        await manager.set_import_marker({"started_at": 0.0})
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        resp = await http.get("/v1/namespaces/busy/entities/user/u1")
        assert resp.status == 409
        body = await resp.json()
        assert body["code"] == "namespace_importing"
        assert body["details"] == {"namespace": "busy"}
        resp = await http.get("/v1/namespaces/idle/entities/user/u1")
        assert resp.status == 404
        await manager.set_import_marker(None)
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        resp = await http.get("/v1/namespaces/busy/entities/user/u1")
        assert resp.status == 404
        # the export of an empty namespace is a manifest and a trailer
        resp = await http.get("/v1/namespaces/busy/export")
        assert resp.status == 200
        assert resp.content_type == "application/x-ndjson"
        lines = (await resp.read()).splitlines()
        assert [orjson.loads(line)["kind"] for line in lines] == ["manifest", "trailer"]


async def test_an_import_of_another_dump_is_refused_while_one_is_under_way(
    backend_name: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    source = managers(store_settings("embedded", "a")).for_namespace("src")
    await fill(source)
    lines = await dump_of(source)
    await source.save_entity("user", "extra", {"other": "dump"})
    other = await dump_of(source)
    target = managers(store_settings(backend_name, "b")).for_namespace("dst")
    # two imports of different dumps starting at once: one runs, the other is refused
    outcomes = await asyncio.gather(
        target.import_namespace(chunks_of(lines)),
        target.import_namespace(chunks_of(other)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, NamespaceImportingError)]
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    assert (len(refused), len(done)) == (1, 1), outcomes
    assert await target.import_marker() is None
    # an interrupted import's marker names its dump: another dump is refused and the
    # marker stays; the same dump finishes it
    winner = lines if outcomes[0] in done else other
    loser = other if winner is lines else lines
    sha256 = orjson.loads(winner[-1])["sha256"]
    await target.set_import_marker({"started_at": 0.0, "sha256": sha256})
    with pytest.raises(NamespaceImportingError):
        await target.import_namespace(chunks_of(loser), replace=True)
    assert (await target.import_marker() or {}).get("sha256") == sha256
    await target.import_namespace(chunks_of(winner))
    assert await target.import_marker() is None
    assert records(await dump_of(target)) == records(winner)


async def test_a_cached_entity_is_not_served_during_an_import(
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    shared = store_settings("redis", "cached")
    assert shared.cache_ttl_seconds > 0  # the per-replica cache is on
    writer = managers(shared).for_namespace("dst")
    reader = managers(shared).for_namespace("dst")  # another replica
    # saved and read by the reader itself: no bus message from another replica can drop it
    await reader.save_entity("user", "u1", {"name": "before"})
    # read until served from its cache (a late bus message may drop the first copy)
    for _ in range(100):
        assert await reader.get_entity("user", "u1") is not None
        if reader.get_metrics()["cache"]["hits"] >= 1:
            break
        await asyncio.sleep(0.05)
    assert reader.get_metrics()["cache"]["hits"] >= 1
    await writer.set_import_marker({"started_at": 0.0})
    await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
    with pytest.raises(NamespaceImportingError):
        await reader.get_entity("user", "u1")


async def test_the_shared_cache_is_not_served_during_an_import(
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
    memcached_server: Any,
    memcached_prefix: str,
) -> None:
    # no per-replica cache: every read reaches the shared (L2) cache
    shared = store_settings("redis", "l2").model_copy(
        update={
            "l2_cache_url": memcached_server.url,
            "l2_cache_prefix": memcached_prefix,
            "cache_ttl_seconds": 0.0,
            "l2_cache_timeout_seconds": 2.0,
        }
    )
    a = managers(shared).for_namespace("dst")
    b = managers(shared).for_namespace("dst")
    await a.save_entity("user", "u1", {"name": "before"})
    assert await a.get_entity("user", "u1") is not None  # now in Memcached
    await a.set_import_marker({"started_at": 0.0})
    await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
    with pytest.raises(NamespaceImportingError):
        await b.get_entity("user", "u1")
    with pytest.raises(NamespaceImportingError):
        await a.get_entity("user", "u1")


async def test_the_summary_listing_skips_a_namespace_under_import(
    store_settings: Callable[[str, str], Settings],
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from memstore.server.app import create_app
    from memstore.server.state import MANAGER

    app = create_app(store_settings("embedded", "summary"))
    async with TestClient(TestServer(app)) as http:
        manager = app[MANAGER]
        for ns in ("busy", "idle"):
            await manager.for_namespace(ns).save_entity("user", "u1", {"ns": ns})
        await manager.for_namespace("busy").set_import_marker({"started_at": 0.0})
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        resp = await http.get("/v1/summary")
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        assert [item["namespace"] for item in page["items"]] == ["idle"]
        assert [(s["namespace"], s["code"]) for s in page["skipped"]] == [
            ("busy", "namespace_importing")
        ]
        await manager.for_namespace("busy").set_import_marker(None)
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        page = await (await http.get("/v1/summary")).json()
        assert [item["namespace"] for item in page["items"]] == ["busy", "idle"]
        assert page["skipped"] == []


async def test_requests_that_find_the_markers_stale_together_read_them_once(
    store_settings: Callable[[str, str], Settings],
) -> None:
    """The import markers are one listing per replica per refresh, however many requests
    arrive while they are stale."""
    from memstore.backends.embedded import EmbeddedMemoryBackend

    listings: list[str] = []

    class CountingBackend(EmbeddedMemoryBackend):
        async def list_entities(self, namespace: str, *args: Any, **kwargs: Any) -> Any:
            listings.append(namespace)
            await asyncio.sleep(0.05)  # a listing that takes a while, as on a remote store
            return await super().list_entities(namespace, *args, **kwargs)

    settings = store_settings("embedded", "markers")
    manager = DistributedMemoryManager(
        settings=settings, namespace="default", backend=CountingBackend(settings)
    )
    try:
        view = manager.for_namespace("busy")
        await asyncio.gather(*(view.load_entity("user", f"u{i}") for i in range(20)))
        assert listings.count(export.IMPORTS_NAMESPACE) == 1
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        await asyncio.gather(*(view.load_entity("user", f"u{i}") for i in range(20)))
        assert listings.count(export.IMPORTS_NAMESPACE) == 2
    finally:
        await manager.close()


async def test_requests_that_find_the_markers_stale_share_a_failed_reading(
    store_settings: Callable[[str, str], Settings],
) -> None:
    """A store that cannot list the markers fails every request waiting on that reading
    at once, with one listing, not one listing (and one wait) per request in turn."""
    from memstore.backends.embedded import EmbeddedMemoryBackend
    from memstore.core.errors import BackendUnavailableError

    listings: list[str] = []
    failing = False

    class FailingBackend(EmbeddedMemoryBackend):
        async def list_entities(self, namespace: str, *args: Any, **kwargs: Any) -> Any:
            if namespace == export.IMPORTS_NAMESPACE and failing:
                listings.append(namespace)
                await asyncio.sleep(0.05)
                raise BackendUnavailableError("the store is away")
            return await super().list_entities(namespace, *args, **kwargs)

    settings = store_settings("embedded", "failing")
    manager = DistributedMemoryManager(
        settings=settings, namespace="default", backend=FailingBackend(settings)
    )
    try:
        view = manager.for_namespace("busy")
        await view.load_entity("user", "u0")  # started, markers read once
        failing = True
        await asyncio.sleep(export.MARKER_REFRESH_SECONDS * 1.2)
        outcomes = await asyncio.gather(
            *(view.load_entity("user", f"u{i}") for i in range(20)), return_exceptions=True
        )
        assert all(isinstance(o, BackendUnavailableError) for o in outcomes), outcomes
        assert listings == [export.IMPORTS_NAMESPACE]
    finally:
        await manager.close()
