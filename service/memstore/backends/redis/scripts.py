"""Lua scripts: each one touches keys of a single hash slot and runs atomically.

The sources are ``lua/<name>.lua`` (package data); a script is its library files
(``lua/<library>.lua``: local functions it calls) followed by its own file. What each
script takes (KEYS, ARGV) and returns is written at the top of its file.

Conventions: times travel as Python ``repr(float)`` strings (exact round trip), ``""``
stands for "none". Write scripts take an operation id (``op``) and remember the last one
on the object, so a retry of a write whose reply was lost (connection reset, failover)
returns the first outcome instead of applying the write twice. Scripts never compare
strings in Lua (Redis sets the collation locale; ordering is left to sorted sets and
Python, which both use byte order).

Byte accounting (``stored_bytes``): every write script also keeps a per-shard counter of
payload bytes (``eb``/``cb``/``tb``/``fb`` keys, same hash tag as the data) in the same
atomic step, so the counters are exact whatever runs concurrently. What counts is what the
embedded backend counts: the JSON of an entity's data, of each message, of a tool use's
input plus output, of a feedback's data. Entities with a TTL keep their size in a per-shard
hash (``es``, "<bytes>:<version>") because Redis may drop the entity key before the expiry
index is pruned; the prune subtracts it and logs the version as expired.

Logical bytes (``logical_bytes``): beside each of those counters, ``<counter>:l`` holds the
same payloads' logical sizes (before compression and encryption, ``lua/logical.lua``),
adjusted by the same scripts in the same step; a shard's first read backfills it once from
its records (data written before it existed). History rows count in neither.

Version history: the entity write scripts move the record they replace or remove into the
entity's history (``lua/history.lua``) and the replace of a conversation keeps its messages
as a revision (``lua/revisions.lua``), in their own atomic step. The expiry prune
(``lua/prune.lua``) and the retention and purge scans reach each record's own keys
through the shard's key prefixes in ARGV: they run on the shard's slot, which those keys
share.

Change log: every script that changes something also appends its change event in the same
atomic step (``lua/changes.lua``: straight into the namespace's log on standalone Redis,
into the shard's outbox on a cluster, which ``RELAY_CHANGES`` moves to the log).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _lua(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _script(name: str, *libraries: str) -> Script:
    source = "\n".join([*(_lua(lib) for lib in libraries), _lua(name)])
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 - Redis script id


SAVE_ENTITY = _script(
    "save_entity",
    "header",
    "logical",
    "expected_version",
    "accounted",
    "history",
    "announce",
    "changes",
)
DELETE_ENTITY = _script(
    "delete_entity",
    "header",
    "logical",
    "expected_version",
    "accounted",
    "history",
    "announce",
    "changes",
)
LIST_ENTITIES = _script("list_entities", "header", "logical", "history", "changes", "prune")
# tool-usage and feedback pages: read-only, one shard each
TIME_PAGE = _script("time_page")
COUNT_ENTITIES = _script("count_entities", "header", "logical", "history", "changes", "prune")
ENTITY_BYTES = _script("entity_bytes", "header", "logical", "history", "changes", "prune")
ENTITY_LOGICAL_BYTES = _script(
    "entity_logical_bytes", "header", "logical", "accounted", "history", "changes", "prune"
)
APPEND_MESSAGES = _script("append_messages", "logical", "push", "size", "announce", "changes")
LOAD_MESSAGES_BEFORE = _script("load_messages_before")
REPLACE_CONVERSATION = _script(
    "replace_conversation", "logical", "push", "size", "revisions", "announce", "changes"
)
DELETE_CONVERSATION = _script("delete_conversation", "logical", "revisions", "announce", "changes")
POP_MESSAGE = _script("pop_message", "logical", "announce", "changes")
RECORD_TOOL_USAGE = _script("record_tool_usage", "logical", "changes", "trim_tools")
TOOL_COUNTS = _script("tool_counts", "logical", "changes", "trim_tools")
TOOL_BYTES = _script("tool_bytes", "logical", "changes", "trim_tools")
TOOL_LOGICAL_BYTES = _script("tool_logical_bytes", "logical", "changes", "trim_tools")
# conversations ("c") and feedback ("f")
LOGICAL_BYTES = _script("logical_bytes", "logical")
SAVE_FEEDBACK = _script("save_feedback", "logical", "changes")
IMPORT_ENTITY = _script(
    "import_entity", "header", "logical", "accounted", "history", "announce", "changes"
)
IMPORT_CONVERSATION = _script("import_conversation", "logical", "announce", "changes")
RELAY_CHANGES = _script("relay_changes")
# retention (memstore.core.retention): scans are read-only, one shard each
RETENTION_ENTITIES = _script("retention_entities", "header", "retention")
RETENTION_CONVERSATIONS = _script("retention_conversations", "retention")
PRUNE_ENTITY = _script(
    "prune_entity", "header", "logical", "retention", "accounted", "history", "changes"
)
PRUNE_CONVERSATION = _script("prune_conversation", "logical", "retention", "revisions", "changes")
PRUNE_TOOLS = _script("prune_tools", "logical", "changes")
PRUNE_FEEDBACK = _script("prune_feedback", "logical", "changes")
PIN_ENTITY = _script("pin_entity", "header")
TOUCH_ENTITIES = _script("touch_entities")
RETENTION_VERSIONS = _script(
    "retention_versions", "header", "history", "revisions", "retention", "version_retention"
)
RETENTION_REVISIONS = _script(
    "retention_revisions", "header", "history", "revisions", "retention", "version_retention"
)
PRUNE_VERSIONS = _script(
    "prune_versions", "header", "history", "revisions", "retention", "version_retention"
)
PRUNE_REVISIONS = _script(
    "prune_revisions", "header", "history", "revisions", "retention", "version_retention"
)
# version history (lua/history.lua, lua/revisions.lua): reads are one script, so a write
# running meanwhile is seen whole or not at all
ENTITY_VERSIONS = _script("entity_versions")
ENTITY_VERSION_AT = _script("entity_version_at", "header", "history")
IMPORT_ENTITY_VERSIONS = _script("import_entity_versions")
LOAD_CONVERSATION_REVISION = _script("load_conversation_revision")
IMPORT_CONVERSATION_REVISION = _script("import_conversation_revision")
PURGE_VERSIONS = _script(
    "purge_versions", "header", "history", "revisions", "retention", "version_retention"
)
PURGE_REVISIONS = _script("purge_revisions", "revisions")
DROP_VERSIONS = _script("drop_versions")
DROP_REVISIONS = _script("drop_revisions")
# analytics: read-only, one shard each (memstore.core.analytics for the definitions)
ANALYTICS_ENTITIES = _script("analytics_entities", "analytics_buckets")
ANALYTICS_MESSAGES = _script("analytics_messages", "analytics_buckets")
ANALYTICS_TIME_COUNTS = _script("analytics_time_counts", "analytics_buckets")
ANALYTICS_TOOLS = _script("analytics_tools", "analytics_buckets")
ANALYTICS_FEEDBACK = _script("analytics_feedback", "analytics_buckets")
READ_CHANGES = _script("read_changes")
TRIM_CHANGES = _script("trim_changes")

ALL = (
    SAVE_ENTITY,
    DELETE_ENTITY,
    LIST_ENTITIES,
    TIME_PAGE,
    COUNT_ENTITIES,
    ENTITY_BYTES,
    ENTITY_LOGICAL_BYTES,
    APPEND_MESSAGES,
    REPLACE_CONVERSATION,
    DELETE_CONVERSATION,
    POP_MESSAGE,
    RECORD_TOOL_USAGE,
    TOOL_COUNTS,
    TOOL_BYTES,
    TOOL_LOGICAL_BYTES,
    LOGICAL_BYTES,
    SAVE_FEEDBACK,
    IMPORT_ENTITY,
    IMPORT_CONVERSATION,
    LOAD_MESSAGES_BEFORE,
    RELAY_CHANGES,
    READ_CHANGES,
    TRIM_CHANGES,
    ANALYTICS_ENTITIES,
    ANALYTICS_MESSAGES,
    ANALYTICS_TIME_COUNTS,
    ANALYTICS_TOOLS,
    ANALYTICS_FEEDBACK,
    RETENTION_ENTITIES,
    RETENTION_CONVERSATIONS,
    PRUNE_ENTITY,
    PRUNE_CONVERSATION,
    PRUNE_TOOLS,
    PRUNE_FEEDBACK,
    PIN_ENTITY,
    TOUCH_ENTITIES,
    RETENTION_VERSIONS,
    RETENTION_REVISIONS,
    PRUNE_VERSIONS,
    PRUNE_REVISIONS,
    ENTITY_VERSIONS,
    ENTITY_VERSION_AT,
    IMPORT_ENTITY_VERSIONS,
    LOAD_CONVERSATION_REVISION,
    IMPORT_CONVERSATION_REVISION,
    PURGE_VERSIONS,
    PURGE_REVISIONS,
    DROP_VERSIONS,
    DROP_REVISIONS,
)
