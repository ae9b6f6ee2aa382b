"""Redis: records written before version history (no history keys, headers without an
actor, TTL'd keys with a Redis expiry) join the history on their next write, and the
numbering goes on from them. The fixtures and their loading are ``test_old_format``'s."""

from __future__ import annotations

from typing import Any

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.redis import RedisMemoryBackend
from memstore.core.changes import Actor, acting_as
from tests.migration.dataset import NAMESPACES
from tests.migration.test_old_format import EXPECTED, old_store

__all__ = ["old_store"]


def _old(ns: str, entity_type: str, entity_id: str) -> dict[str, Any]:
    entities: list[dict[str, Any]] = EXPECTED["redis"][ns]["entities"]
    return next(e for e in entities if (e["type"], e["id"]) == (entity_type, entity_id))


@pytest.mark.parametrize("old_store", ["redis", "redis_cluster"], indirect=True)
async def test_old_records_join_the_history(
    old_store: tuple[str, DistributedMemoryBackend],
) -> None:
    _, backend = old_store
    assert isinstance(backend, RedisMemoryBackend)
    for ns in NAMESPACES:
        u0 = _old(ns, "user", "u0")
        # before any write, the old record is the key's only version (no actor recorded)
        (only,) = (await backend.list_entity_versions(ns, "user", "u0")).items
        assert (only.version, only.data, only.actor, only.deleted) == (
            u0["version"],
            u0["data"],
            None,
            False,
        )
        assert only.saved_at == u0["updated_at"]
        with acting_as(Actor("upgrader")):
            saved = await backend.save_entity(ns, "user", "u0", {"after": "upgrade"})
        assert saved.version == u0["version"] + 1
        rows = (await backend.list_entity_versions(ns, "user", "u0")).items
        assert [(v.version, v.actor, v.data) for v in rows] == [
            (saved.version, "upgrader", {"after": "upgrade"}),
            (u0["version"], None, u0["data"]),
        ]

        # a delete of an old record leaves its tombstone; the re-create numbers on
        u1 = _old(ns, "user", "u1")
        assert await backend.delete_entity(ns, "user", "u1")
        again = await backend.save_entity(ns, "user", "u1", {"again": True}, expected_version=0)
        assert again.version == u1["version"] + 1
        rows = (await backend.list_entity_versions(ns, "user", "u1")).items
        assert [(v.version, v.deleted) for v in rows] == [
            (again.version, False),
            (u1["version"], True),
            (u1["version"], False),
        ]

        # the TTL'd record (written with a Redis expiry) moves into the history too
        s1 = _old(ns, "session", "s1")
        replaced = await backend.save_entity(ns, "session", "s1", {"fresh": True})
        assert replaced.version == s1["version"] + 1
        rows = (await backend.list_entity_versions(ns, "session", "s1")).items
        assert [(v.version, v.data, v.expires_at) for v in rows] == [
            (replaced.version, {"fresh": True}, None),
            (s1["version"], s1["data"], s1["expires_at"]),
        ]

        # a conversation replaced before history has no revision; the next replace makes 1
        assert (await backend.list_conversation_revisions(ns, "c2")).items == []
        await backend.replace_conversation(ns, "c2", [{"role": "user", "content": "new"}])
        (rev,) = (await backend.list_conversation_revisions(ns, "c2")).items
        assert (rev.revision, rev.message_count) == (1, 2)
