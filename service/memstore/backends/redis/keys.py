"""Key layout for the Redis backend (standalone and Redis Cluster use the same keys).

Invariants:

* Every key starts with the configured prefix ``P`` and carries exactly one hash tag
  ``{...}``. Names validated by ``memstore.core.validation`` never contain ``{`` or ``}``, and
  the prefix is checked at start-up, so a caller can never move a key to another slot.
* Data of one (namespace, kind) is split into ``shards`` index shards. Shard ``k``'s hash
  tag is chosen (by a deterministic search over a counter suffix) so that its slot falls
  in the ``k``-th equal slice of the 16384 slots. With the usual contiguous slot
  allocation every master therefore owns a share of the shards proportional to its slot
  range: one namespace spreads over all masters, independent of its name.
* Everything one atomic operation touches (an entity, its history and its index shard; a
  conversation's messages, revisions, metadata and shard counters; a tool-usage record and
  its time indexes) shares one tag, so every Lua script is single-slot. Operations that
  span shards (listing, summary) are split into one single-slot command per shard:
  CROSSSLOT cannot happen.
* A namespace's change log (a stream) and its state (a hash: the last position, and per
  outbox the last entry relayed) share one tag of their own. On a cluster every data tag
  has an outbox stream next to its data, where the write scripts put their events; the
  relay script moves them to the log on the log's slot.
"""

from __future__ import annotations

import binascii
from functools import lru_cache

SLOTS = 16384


def key_slot(tag: str) -> int:
    """Redis Cluster slot of a hash tag's content (CRC16/XMODEM mod 16384)."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


@lru_cache(maxsize=4096)
def spread_tags(base: str, shards: int) -> tuple[str, ...]:
    """``shards`` hash-tag contents for ``base``, tag ``k`` landing in slot slice ``k``."""
    tags: list[str] = []
    for k in range(shards):
        lo = k * SLOTS // shards
        hi = (k + 1) * SLOTS // shards
        n = 0
        while True:
            tag = f"{base}|{k}.{n}"
            if lo <= key_slot(tag) < hi:
                break
            n += 1
        tags.append(tag)
    return tuple(tags)


def shard_of(member: str, shards: int) -> int:
    """Which shard a record id belongs to (stable across processes and versions)."""
    return binascii.crc32(member.encode()) % shards


class Keys:
    """Builds every key name. ``prefix`` is the deployment prefix (``REDIS_PREFIX``)."""

    __slots__ = ("prefix", "shards")

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards

    # -- entities: hash per entity + per-shard lex index and expiry index ---------------

    def entity_tags(self, ns: str, entity_type: str) -> tuple[str, ...]:
        return spread_tags(f"{ns}|e|{entity_type}", self.shards)

    def entity_tag(self, ns: str, entity_type: str, entity_id: str) -> str:
        return self.entity_tags(ns, entity_type)[shard_of(entity_id, self.shards)]

    def entity(self, tag: str, entity_id: str) -> str:
        return f"{self.prefix}e:{{{tag}}}:{entity_id}"

    def entity_tombstone(self, tag: str, entity_id: str) -> str:
        """Short-lived marker of the last delete's operation id (idempotent retries)."""
        return f"{self.prefix}ed:{{{tag}}}:{entity_id}"

    def entity_index(self, tag: str) -> str:
        """Sorted set, all scores 0: live-or-not-yet-pruned ids in lexical order."""
        return f"{self.prefix}ei:{{{tag}}}"

    def entity_created(self, tag: str) -> str:
        """Shard sorted set id -> created_at (analytics), kept by the entity scripts
        (passed in their KEYS like every key a script touches)."""
        return f"{self.entity_index(tag)}:c"

    def entity_expiry(self, tag: str) -> str:
        """Sorted set id -> expires_at for entities with a TTL (same members as above)."""
        return f"{self.prefix}ex:{{{tag}}}"

    def entity_sizes(self, tag: str) -> str:
        """Hash id -> accounted payload bytes, for entities with a TTL only (their key may
        vanish before the expiry index is pruned; the size must outlive it)."""
        return f"{self.prefix}es:{{{tag}}}"

    def entity_bytes(self, tag: str) -> str:
        """Payload bytes of the shard's not-yet-pruned entities (kept exact by the scripts)."""
        return f"{self.prefix}eb:{{{tag}}}"

    def entity_accessed(self, tag: str) -> str:
        """Hash id -> the last read the service recorded (retention's idle time); entities
        never read since have no field and count from their last save."""
        return f"{self.prefix}ea:{{{tag}}}"

    def entity_history(self, tag: str, entity_id: str) -> str:
        """Sorted set of the entity's past versions and tombstones (``lua/history.lua``)."""
        return f"{self.prefix}eh:{{{tag}}}:{entity_id}"

    def entity_version(self, tag: str, version: int | str, entity_id: str) -> str:
        """A past version's value, the entity value renamed (the number before the id:
        ids may hold ``:``, digits never do)."""
        return f"{self.entity_version_prefix(tag)}{version}:{entity_id}"

    def entity_version_prefix(self, tag: str) -> str:
        return f"{self.prefix}ev:{{{tag}}}:"

    def entity_history_index(self, tag: str) -> str:
        """Sorted set, all scores 0: the ids of the shard that have a history, in lexical
        order (a deleted entity is in it and no longer in the index above)."""
        return f"{self.prefix}ehi:{{{tag}}}"

    def entity_types(self, ns: str) -> str:
        """Set of types ever written in the namespace (a superset; counts decide liveness)."""
        return f"{self.prefix}et:{{{ns}|types}}"

    # -- conversations: list of messages + metadata hash + per-shard index/counter ------

    def conversation_tags(self, ns: str) -> tuple[str, ...]:
        return spread_tags(f"{ns}|c", self.shards)

    def conversation_tag(self, ns: str, conversation_id: str) -> str:
        return self.conversation_tags(ns)[shard_of(conversation_id, self.shards)]

    def conversation_meta(self, tag: str, conversation_id: str) -> str:
        return f"{self.prefix}c:{{{tag}}}:{conversation_id}"

    def conversation_messages(self, tag: str, conversation_id: str) -> str:
        return f"{self.prefix}m:{{{tag}}}:{conversation_id}"

    def conversation_last_pop(self, tag: str, conversation_id: str) -> str:
        """Short-lived marker of the last pop's operation id and item (idempotent retries)."""
        return f"{self.prefix}cp:{{{tag}}}:{conversation_id}"

    def conversation_revisions(self, tag: str, conversation_id: str) -> str:
        """Hash of the conversation's revisions (``lua/revisions.lua``): ``n`` = the last
        revision number given, ``<revision>`` = its "<replaced_at>|<count>|<actor JSON>"."""
        return f"{self.prefix}cr:{{{tag}}}:{conversation_id}"

    def conversation_revision_messages(self, tag: str, revision: int, conversation_id: str) -> str:
        """List of a revision's messages, items as in the conversation's own list (the
        number before the id: ids may hold ``:``, digits never do)."""
        return f"{self.conversation_revision_messages_prefix(tag)}{revision}:{conversation_id}"

    def conversation_revision_messages_prefix(self, tag: str) -> str:
        return f"{self.prefix}crm:{{{tag}}}:"

    def conversation_revision_index(self, tag: str) -> str:
        """Sorted set, all scores 0: the ids of the shard's conversations with revisions."""
        return f"{self.prefix}cri:{{{tag}}}"

    def conversation_index(self, tag: str) -> str:
        return f"{self.prefix}ci:{{{tag}}}"

    def conversation_counter(self, tag: str) -> str:
        """Total number of messages in the shard (kept exact by the scripts)."""
        return f"{self.prefix}cn:{{{tag}}}"

    def conversation_bytes(self, tag: str) -> str:
        """Total message payload bytes in the shard (kept exact by the scripts)."""
        return f"{self.prefix}cb:{{{tag}}}"

    # -- tool usage: per-shard record hash, time index overall and per tool -------------

    def tool_tags(self, ns: str) -> tuple[str, ...]:
        return spread_tags(f"{ns}|t", self.shards)

    def tool_tag(self, ns: str, record_id: str) -> str:
        return self.tool_tags(ns)[shard_of(record_id, self.shards)]

    def tool_records(self, tag: str) -> str:
        return f"{self.prefix}th:{{{tag}}}"

    def tool_time(self, tag: str) -> str:
        return f"{self.prefix}tz:{{{tag}}}"

    def tool_by_name_prefix(self, tag: str) -> str:
        return f"{self.prefix}tt:{{{tag}}}:"

    def tool_by_name(self, tag: str, tool_name: str) -> str:
        return f"{self.tool_by_name_prefix(tag)}{tool_name}"

    def tool_counts(self, tag: str) -> str:
        return f"{self.prefix}tc:{{{tag}}}"

    def tool_bytes(self, tag: str) -> str:
        """Input + output payload bytes of the shard's records (kept exact by the scripts)."""
        return f"{self.prefix}tb:{{{tag}}}"

    # -- learning feedback ------------------------------------------------------------

    def feedback_tags(self, ns: str) -> tuple[str, ...]:
        return spread_tags(f"{ns}|f", self.shards)

    def feedback_tag(self, ns: str, record_id: str) -> str:
        return self.feedback_tags(ns)[shard_of(record_id, self.shards)]

    def feedback_records(self, tag: str) -> str:
        return f"{self.prefix}fh:{{{tag}}}"

    def feedback_time(self, tag: str, agent: str | None = None, kind: str | None = None) -> str:
        """Time index overall, per agent, per type, or per (agent, type). Types never
        contain ``:`` so the last ``:`` separates agent from type unambiguously."""
        if agent is None and kind is None:
            return f"{self.prefix}fz:{{{tag}}}"
        if kind is None:
            return f"{self.prefix}fa:{{{tag}}}:{agent}"
        if agent is None:
            return f"{self.prefix}ft:{{{tag}}}:{kind}"
        return f"{self.prefix}fat:{{{tag}}}:{agent}:{kind}"

    def feedback_bytes(self, tag: str) -> str:
        """Payload bytes of the shard's feedback records (kept exact by the scripts)."""
        return f"{self.prefix}fb:{{{tag}}}"

    # -- change log ---------------------------------------------------------------------

    def change_log(self, ns: str) -> str:
        """Stream of the namespace's change events, entry id ``<position>-0``."""
        return f"{self.prefix}cl:{{{ns}|changes}}"

    def change_state(self, ns: str) -> str:
        """Hash: ``p`` = the last position given; per outbox (field = the outbox's key)
        the id of its last entry relayed to the log."""
        return f"{self.prefix}cs:{{{ns}|changes}}"

    def change_outbox(self, tag: str) -> str:
        """Cluster only: stream of the events of the writes on ``tag``'s slot, in write
        order, until they are relayed to the namespace's log."""
        return f"{self.prefix}co:{{{tag}}}"

    # -- namespace registry -------------------------------------------------------------

    def namespaces(self) -> str:
        """Set of namespaces ever written (a superset; liveness is checked on read)."""
        return f"{self.prefix}ns:{{namespaces}}"

    # -- cache invalidation channels ----------------------------------------------------

    def invalidation_slot_channel(self, slot: int) -> str:
        """The sharded pub/sub channel of one cluster slot. A write script publishes on
        its own slot's channel (a script may only touch its own slot), so subscribers
        listen to all 16384; a fallback publish uses the slot of the cache key."""
        return f"{self.prefix}inv:{{{slot_tags()[slot]}}}"

    def invalidation_channel(self) -> str:
        """The single classic pub/sub channel used on standalone Redis."""
        return f"{self.prefix}inv"


@lru_cache(maxsize=1)
def slot_tags() -> tuple[str, ...]:
    """For every slot, the first decimal number (as text) hashing to it: a fixed table,
    the same in every process (computed once, ~0.1 s)."""
    table: list[str | None] = [None] * SLOTS
    missing = SLOTS
    n = 0
    crc = binascii.crc_hqx
    while missing:
        text = str(n)
        slot = crc(text.encode(), 0) % SLOTS
        if table[slot] is None:
            table[slot] = text
            missing -= 1
        n += 1
    return tuple(t for t in table if t is not None)
