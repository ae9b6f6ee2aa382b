"""Collections, indexes and shard keys of the MongoDB backend, as pure data.

Everything the backend sends to create its schema is built here by pure functions, so unit
tests check the exact commands and the invariants that make sharding safe. The reasoning is
in docs/architecture.md ("MongoDB backend"); in short:

* Every collection holds all namespaces; ``ns`` is the first field of every index and of
  every shard key, and every query the backend sends has an equality on ``ns`` (plus
  ``type`` for entities, ``cid`` for messages), so mongos targets only the chunks of one
  namespace, never all shards for a point read.
* The shard keys end in a hashed field (``id`` or ``cid``), so one namespace's data is
  spread over many chunks and therefore over shards, instead of one namespace = one chunk.
* A unique index on a sharded collection is only enforceable when the shard key's fields
  are a prefix of it (MongoDB compares field names, so ``{id: 1}`` in the unique index
  covers ``{id: "hashed"}`` in the shard key): every unique index below starts with the
  shard key's fields, so uniqueness is global even when sharded.
* Messages are sharded by ``{ns, cid: hashed, seq}``: a conversation's messages stay
  together (a "last N" read is one shard, one index range) while a single very long
  conversation can still be split by ``seq`` instead of becoming a jumbo chunk.
"""

from __future__ import annotations

from typing import Any

ENTITIES = "entities"
CONVERSATIONS = "conversations"
MESSAGES = "messages"
TOOL_USAGE = "tool_usage"
FEEDBACK = "feedback"
#: the change log: one document per position of a namespace, plus its head (``pos`` 0)
CHANGES = "changes"
#: version history: the versions saves replaced, and the tombstones deletes left
ENTITY_VERSIONS = "entity_versions"
#: what ``replace_conversation`` replaced: one document per revision ...
REVISIONS = "conversation_revisions"
#: ... and one per message of a revision (like ``messages``: no 16 MB ceiling)
REVISION_MESSAGES = "revision_messages"
COLLECTIONS = (
    ENTITIES,
    CONVERSATIONS,
    MESSAGES,
    TOOL_USAGE,
    FEEDBACK,
    CHANGES,
    ENTITY_VERSIONS,
    REVISIONS,
    REVISION_MESSAGES,
)

#: name of the TTL index; FerretDB v1 cannot build it (the backend then purges itself)
TTL_INDEX = "entities_ttl"

Spec = dict[str, Any]

SHARD_KEYS: dict[str, dict[str, Any]] = {
    ENTITIES: {"ns": 1, "type": 1, "id": "hashed"},
    CONVERSATIONS: {"ns": 1, "id": "hashed"},
    MESSAGES: {"ns": 1, "cid": "hashed", "seq": 1},
    TOOL_USAGE: {"ns": 1, "id": "hashed"},
    FEEDBACK: {"ns": 1, "id": "hashed"},
    # Hashed slots: a namespace's appends land on every chunk instead of the last one;
    # a tail read is then sent to each of the namespace's shards (each walks the
    # position index), which is fine for a log that is written far more than read.
    CHANGES: {"ns": 1, "slot": "hashed"},
    # An entity's history lives with it (same key as ``entities``), a revision's
    # messages with their conversation (split by revision and seq, as messages are).
    ENTITY_VERSIONS: {"ns": 1, "type": 1, "id": "hashed"},
    REVISIONS: {"ns": 1, "cid": "hashed"},
    REVISION_MESSAGES: {"ns": 1, "cid": "hashed", "rev": 1, "seq": 1},
}

#: fields every query on the collection pins with an equality (checked by a test that
#: records the commands the backend really sends)
QUERY_PREFIX: dict[str, tuple[str, ...]] = {
    ENTITIES: ("ns",),
    CONVERSATIONS: ("ns",),
    MESSAGES: ("ns", "cid"),
    TOOL_USAGE: ("ns",),
    FEEDBACK: ("ns",),
    CHANGES: ("ns",),
    ENTITY_VERSIONS: ("ns",),
    # Retention trims revisions across a namespace's conversations, and ``purge_history``
    # erases every revision's messages of a namespace (rare, admin): both ask each of the
    # namespace's shards.
    REVISIONS: ("ns",),
    REVISION_MESSAGES: ("ns",),
}


def _index(name: str, key: dict[str, Any], **options: Any) -> Spec:
    return {"key": key, "name": name, **options}


def index_specs() -> dict[str, list[Spec]]:
    """The indexes every deployment has, sharded or not (the TTL index is separate)."""
    return {
        ENTITIES: [_index("entities_key", {"ns": 1, "type": 1, "id": 1}, unique=True)],
        CONVERSATIONS: [_index("conversations_key", {"ns": 1, "id": 1}, unique=True)],
        MESSAGES: [
            # Serves "all", "last N" and "before seq" reads with one index range, walked
            # backwards for "last N"; unique so a retried insert can never double a message.
            _index("messages_key", {"ns": 1, "cid": 1, "seq": 1}, unique=True),
        ],
        TOOL_USAGE: [
            _index("tool_usage_key", {"ns": 1, "id": 1}, unique=True),
            _index("tool_usage_by_time", {"ns": 1, "ts": 1, "id": 1}),
            _index("tool_usage_by_tool", {"ns": 1, "tool": 1, "ts": 1, "id": 1}),
        ],
        FEEDBACK: [
            _index("feedback_key", {"ns": 1, "id": 1}, unique=True),
            _index("feedback_by_time", {"ns": 1, "ts": 1, "id": 1}),
            _index("feedback_by_agent", {"ns": 1, "agent": 1, "ftype": 1, "ts": 1, "id": 1}),
        ],
        CHANGES: [
            # Unique: of two inserts at one slot (a late writer and a reader filling its
            # hole) exactly one wins, so every reader sees the same document there.
            _index("changes_key", {"ns": 1, "slot": 1}, unique=True),
            # Reads by position (only sealed events have one).
            _index("changes_by_position", {"ns": 1, "pos": 1}),
        ],
        ENTITY_VERSIONS: [
            # One row per (version, tombstone or not): a retried move into history
            # replaces its row instead of doubling it. Walked backwards for "newest first".
            _index(
                "entity_versions_key",
                {"ns": 1, "type": 1, "id": 1, "version": 1, "deleted": 1},
                unique=True,
            ),
            # Retention by age.
            _index("entity_versions_by_time", {"ns": 1, "saved_at": 1}),
        ],
        REVISIONS: [
            _index("conversation_revisions_key", {"ns": 1, "cid": 1, "rev": 1}, unique=True),
            _index("conversation_revisions_by_time", {"ns": 1, "replaced_at": 1}),
        ],
        REVISION_MESSAGES: [
            _index("revision_messages_key", {"ns": 1, "cid": 1, "rev": 1, "seq": 1}, unique=True),
        ],
    }


def ttl_index_command() -> dict[str, Any]:
    """The TTL index, in a command of its own so a server without TTL indexes (FerretDB
    v1) still gets every other index. A TTL index cannot be compound. Its date field is the
    expiry rounded *up* to the millisecond, so the TTL monitor never removes a still-live
    entity; reads filter on the exact float ``expires_at`` because the monitor runs only
    every 60 s."""
    return {
        "createIndexes": ENTITIES,
        "indexes": [_index(TTL_INDEX, {"expire_on": 1}, expireAfterSeconds=0)],
    }


def shard_key_index(collection: str) -> Spec:
    return _index(f"{collection}_shard_key", dict(SHARD_KEYS[collection]))


def index_commands(*, sharded: bool) -> list[dict[str, Any]]:
    """``createIndexes`` commands, one index per command; idempotent (re-running one on
    an existing, identical index is a no-op). One per command because FerretDB v1 panics
    when a single command names two or more indexes that already exist (its validation
    deletes from a slice by a stale position), which would make every restart fail; on
    MongoDB the difference is a few round trips at start-up. With ``sharded`` each
    collection also gets its shard-key index, which ``shardCollection`` needs when the
    collection already has documents."""
    commands = []
    for collection, specs in index_specs().items():
        indexes = list(specs)
        if sharded:
            indexes.append(shard_key_index(collection))
        commands += [{"createIndexes": collection, "indexes": [spec]} for spec in indexes]
    return commands


def sharding_commands(database: str) -> list[dict[str, Any]]:
    """Admin commands that shard every collection (run against mongos, in this order).

    ``enableSharding`` is implied by ``shardCollection`` since MongoDB 6.0 and accepted
    by older servers. Both are idempotent on current servers; older ones answer
    ``AlreadyInitialized``, which the backend treats as success. Hashed shard keys cannot
    be ``unique``; global uniqueness comes from the unique indexes above, each of which
    starts with its collection's shard-key fields (checked by a unit test).
    """
    commands: list[dict[str, Any]] = [{"enableSharding": database}]
    for collection in COLLECTIONS:
        commands.append(
            {"shardCollection": f"{database}.{collection}", "key": dict(SHARD_KEYS[collection])}
        )
    return commands


# -- deployment facts from the server's ``hello`` answer ----------------------------------


def is_mongos(hello: dict[str, Any]) -> bool:
    return hello.get("msg") == "isdbgrid"


def use_transactions(mode: str, hello: dict[str, Any]) -> bool:
    """``on``/``off`` force it; ``auto`` uses multi-document transactions exactly where
    MongoDB offers them: a replica set member or mongos that supports sessions (a
    standalone server, and FerretDB v1, cannot run them)."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    sessions = hello.get("logicalSessionTimeoutMinutes") is not None
    return sessions and ("setName" in hello or is_mongos(hello))


def has_atomic_updates(build_info: dict[str, Any]) -> bool:
    """False for FerretDB v1, whose updates read then write by ``_id`` without a
    transaction (FerretDB issue #3040), so concurrent conditional updates can both win."""
    return "ferretdbVersion" not in build_info
