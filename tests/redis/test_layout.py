"""Key layout on a Redis Cluster: one namespace spreads over every master, and every
operation's keys share one slot (so CROSSSLOT cannot happen, whatever the names)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memstore.backends.redis import RedisMemoryBackend
from memstore.backends.redis.keys import SLOTS, Keys, key_slot, spread_tags
from memstore.core.errors import ConfigurationError
from memstore.core.settings import Settings
from memstore.core.validation import ID_RE, NAMESPACE_RE, TOOL_RE, TYPE_RE
from tests.redis.conftest import slot_of, slot_owners
from tests.servers.redis import LocalCluster

names = st.from_regex(NAMESPACE_RE, fullmatch=True)
types = st.from_regex(TYPE_RE, fullmatch=True)
ids = st.from_regex(ID_RE, fullmatch=True)
tools = st.from_regex(TOOL_RE, fullmatch=True)
prefixes = st.sampled_from(["", "agent:", "memstore/prod:", "x|y:"])


def test_prefix_cannot_carry_a_hash_tag() -> None:
    with pytest.raises(ConfigurationError):
        RedisMemoryBackend(Settings(memory_type="redis", redis_prefix="app{1}:"))


def test_key_slot_matches_redis() -> None:
    from redis.crc import key_slot as redis_key_slot

    for tag in ["", "x", "ns|e|user|3.17", "ünï|c"]:
        assert key_slot(tag) == redis_key_slot(tag.encode())


def test_spread_tags_land_in_their_slice() -> None:
    for shards in (1, 3, 16, 64):
        tags = spread_tags("ns|e|user", shards)
        assert len(tags) == shards
        for k, tag in enumerate(tags):
            assert k * SLOTS // shards <= key_slot(tag) < (k + 1) * SLOTS // shards


@settings(max_examples=300, deadline=None)
@given(
    prefix=prefixes, ns=names, etype=types, eid=ids, cid=ids, tool=tools, shards=st.integers(1, 64)
)
def test_every_operation_is_single_slot(
    prefix: str, ns: str, etype: str, eid: str, cid: str, tool: str, shards: int
) -> None:
    backend = RedisMemoryBackend(
        Settings(memory_type="redis", redis_prefix=prefix, redis_index_shards=shards)
    )
    k: Keys = backend.keys
    groups: list[list[str]] = [
        [
            *backend._entity_keys(ns, etype, eid),
            k.entity_tombstone(k.entity_tag(ns, etype, eid), eid),
        ],
        [
            *backend._conversation_keys(ns, cid),
            k.conversation_last_pop(k.conversation_tag(ns, cid), cid),
            *backend._revision_keys(k.conversation_tag(ns, cid), cid),
            k.conversation_revision_messages(k.conversation_tag(ns, cid), 7, cid),
        ],
    ]
    t = k.tool_tag(ns, eid)
    groups.append([k.tool_records(t), k.tool_time(t), k.tool_by_name(t, tool), k.tool_counts(t)])
    f = k.feedback_tag(ns, eid)
    groups.append(
        [
            k.feedback_records(f),
            k.feedback_time(f),
            k.feedback_time(f, agent=tool),
            k.feedback_time(f, kind=etype),
            k.feedback_time(f, agent=tool, kind=etype),
        ]
    )
    for tag in k.entity_tags(ns, etype):
        groups.append([k.entity_index(tag), k.entity_expiry(tag), k.entity_created(tag)])
    # on a cluster each write script also appends to its own slot's change outbox, and the
    # relay script writes the namespace's log and its state
    tags = [
        k.entity_tag(ns, etype, eid),
        k.conversation_tag(ns, cid),
        k.tool_tag(ns, eid),
        k.feedback_tag(ns, eid),
    ]
    for group, tag in zip(groups, tags, strict=False):
        group.append(k.change_outbox(tag))
    groups.append([k.change_log(ns), k.change_state(ns)])
    for group in groups:
        assert len({slot_of(key) for key in group}) == 1, group
        # exactly one hash tag per key, so names can never pick the slot
        assert all(key.count("{") == 1 and key.count("}") == 1 for key in group)


async def test_ten_thousand_entities_spread_over_every_master(
    redis_cluster: LocalCluster, redis_cluster_settings: Settings
) -> None:
    backend = RedisMemoryBackend(redis_cluster_settings)
    await backend.connect()
    ns = f"spread{uuid.uuid4().hex[:8]}"
    total = 10_000
    try:
        queue = iter(range(total))

        async def writer() -> None:
            for i in queue:
                await backend.save_entity(ns, "doc", f"d{i:05d}", {"i": i})

        await asyncio.gather(*(writer() for _ in range(32)))

        owners = slot_owners(redis_cluster)
        masters = {n.port for n in redis_cluster.masters()}
        assert len(masters) == 3
        # where the entity keys really are: count them on each master
        prefix = backend.keys.prefix
        on_node = Counter[int]()
        for node in redis_cluster.masters():
            on_node[node.port] = sum(
                1 for _ in node.client.scan_iter(match=f"{prefix}e:*", count=2000)
            )
        # and where the layout says they should be
        by_slot = Counter(
            owners[slot_of(backend._entity_keys(ns, "doc", f"d{i:05d}")[0])] for i in range(total)
        )
        assert on_node == by_slot
        assert sum(on_node.values()) == total
        shares = {port: n / total for port, n in on_node.items()}
        print(f"\nentity share per master: { {p: round(s, 3) for p, s in shares.items()} }")
        assert set(shares) == masters
        assert all(share >= 0.20 for share in shares.values()), shares

        summary = await backend.summary(ns)
        assert summary.entity_counts == {"doc": total}
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await backend.list_entities(ns, "doc", limit=500, cursor=cursor)
            seen += [e.id for e in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [f"d{i:05d}" for i in range(total)]
    finally:
        await backend.close()
