"""Unit tests of the schema and sharding commands the MongoDB backend sends (pure code).

The exact commands are pinned (a change must be deliberate and show up in review), and
the invariants that make sharding safe are checked for every collection, so a new index
or shard key that would break them fails here rather than on a production mongos.
"""

from __future__ import annotations

from typing import Any

import pytest

from memstore.backends.mongodb import schema


def _fields(key: dict[str, Any]) -> list[str]:
    return list(key)


def test_index_commands_unsharded_are_pinned() -> None:
    def one(collection: str, **spec: Any) -> dict[str, Any]:
        return {"createIndexes": collection, "indexes": [spec]}

    assert schema.index_commands(sharded=False) == [
        one("entities", key={"ns": 1, "type": 1, "id": 1}, name="entities_key", unique=True),
        one("conversations", key={"ns": 1, "id": 1}, name="conversations_key", unique=True),
        one("messages", key={"ns": 1, "cid": 1, "seq": 1}, name="messages_key", unique=True),
        one("tool_usage", key={"ns": 1, "id": 1}, name="tool_usage_key", unique=True),
        one("tool_usage", key={"ns": 1, "ts": 1, "id": 1}, name="tool_usage_by_time"),
        one("tool_usage", key={"ns": 1, "tool": 1, "ts": 1, "id": 1}, name="tool_usage_by_tool"),
        one("feedback", key={"ns": 1, "id": 1}, name="feedback_key", unique=True),
        one("feedback", key={"ns": 1, "ts": 1, "id": 1}, name="feedback_by_time"),
        one(
            "feedback",
            key={"ns": 1, "agent": 1, "ftype": 1, "ts": 1, "id": 1},
            name="feedback_by_agent",
        ),
        one("changes", key={"ns": 1, "slot": 1}, name="changes_key", unique=True),
        one("changes", key={"ns": 1, "pos": 1}, name="changes_by_position"),
        one(
            "entity_versions",
            key={"ns": 1, "type": 1, "id": 1, "version": 1, "deleted": 1},
            name="entity_versions_key",
            unique=True,
        ),
        one("entity_versions", key={"ns": 1, "saved_at": 1}, name="entity_versions_by_time"),
        one(
            "conversation_revisions",
            key={"ns": 1, "cid": 1, "rev": 1},
            name="conversation_revisions_key",
            unique=True,
        ),
        one(
            "conversation_revisions",
            key={"ns": 1, "replaced_at": 1},
            name="conversation_revisions_by_time",
        ),
        one(
            "revision_messages",
            key={"ns": 1, "cid": 1, "rev": 1, "seq": 1},
            name="revision_messages_key",
            unique=True,
        ),
    ]


def _by_collection(commands: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for command in commands:
        assert len(command["indexes"]) == 1  # one index per command (FerretDB v1 bug)
        grouped.setdefault(command["createIndexes"], []).append(command["indexes"][0])
    return grouped


def test_ttl_index_command_is_separate_and_single_field() -> None:
    command = schema.ttl_index_command()
    assert command == {
        "createIndexes": "entities",
        "indexes": [{"key": {"expire_on": 1}, "name": "entities_ttl", "expireAfterSeconds": 0}],
    }
    assert all(
        "expireAfterSeconds" not in spec
        for c in schema.index_commands(sharded=True)
        for spec in c["indexes"]
    )


def test_sharded_index_commands_add_the_shard_key_index() -> None:
    plain = _by_collection(schema.index_commands(sharded=False))
    sharded = _by_collection(schema.index_commands(sharded=True))
    assert set(sharded) == set(schema.COLLECTIONS)
    for collection, indexes in sharded.items():
        assert indexes[:-1] == plain[collection] == schema.index_specs()[collection]
        assert indexes[-1] == {
            "key": schema.SHARD_KEYS[collection],
            "name": f"{collection}_shard_key",
        }


def test_sharding_commands_are_pinned() -> None:
    assert schema.sharding_commands("agent_memory") == [
        {"enableSharding": "agent_memory"},
        {"shardCollection": "agent_memory.entities", "key": {"ns": 1, "type": 1, "id": "hashed"}},
        {"shardCollection": "agent_memory.conversations", "key": {"ns": 1, "id": "hashed"}},
        {"shardCollection": "agent_memory.messages", "key": {"ns": 1, "cid": "hashed", "seq": 1}},
        {"shardCollection": "agent_memory.tool_usage", "key": {"ns": 1, "id": "hashed"}},
        {"shardCollection": "agent_memory.feedback", "key": {"ns": 1, "id": "hashed"}},
        {"shardCollection": "agent_memory.changes", "key": {"ns": 1, "slot": "hashed"}},
        {
            "shardCollection": "agent_memory.entity_versions",
            "key": {"ns": 1, "type": 1, "id": "hashed"},
        },
        {
            "shardCollection": "agent_memory.conversation_revisions",
            "key": {"ns": 1, "cid": "hashed"},
        },
        {
            "shardCollection": "agent_memory.revision_messages",
            "key": {"ns": 1, "cid": "hashed", "rev": 1, "seq": 1},
        },
    ]
    # Hashed shard keys cannot be unique; the command must never ask for it.
    assert all("unique" not in c for c in schema.sharding_commands("x"))


def test_generated_commands_do_not_share_state() -> None:
    first = schema.sharding_commands("a")
    first[1]["key"]["ns"] = "mutated"
    schema.index_commands(sharded=True)[0]["indexes"][-1]["key"]["ns"] = "mutated"
    assert schema.SHARD_KEYS["entities"]["ns"] == 1
    assert schema.sharding_commands("a")[1]["key"]["ns"] == 1


@pytest.mark.parametrize("collection", schema.COLLECTIONS)
def test_shard_key_spreads_a_namespace_and_starts_with_ns(collection: str) -> None:
    key = schema.SHARD_KEYS[collection]
    assert _fields(key)[0] == "ns"
    assert key["ns"] == 1
    # Exactly one hashed field, after the namespace: one namespace spans many chunks.
    hashed = [f for f, kind in key.items() if kind == "hashed"]
    assert len(hashed) == 1
    assert hashed[0] != "ns"


@pytest.mark.parametrize("collection", schema.COLLECTIONS)
def test_every_unique_index_is_enforceable_when_sharded(collection: str) -> None:
    """MongoDB enforces a unique index on a sharded collection only if the shard key's
    field names are a prefix of it (hashed or not, it compares names)."""
    shard_fields = _fields(schema.SHARD_KEYS[collection])
    uniques = [s for s in schema.index_specs()[collection] if s.get("unique")]
    assert uniques, "every collection has a unique key per namespace"
    for spec in uniques:
        assert _fields(spec["key"])[: len(shard_fields)] == shard_fields
        assert all(kind == 1 for kind in spec["key"].values())


@pytest.mark.parametrize("collection", schema.COLLECTIONS)
def test_every_index_and_query_prefix_starts_with_the_shard_key_prefix(collection: str) -> None:
    shard_fields = _fields(schema.SHARD_KEYS[collection])
    prefix = list(schema.QUERY_PREFIX[collection])
    assert prefix[0] == "ns"
    assert shard_fields[: len(prefix)] == prefix
    for spec in schema.index_specs()[collection]:
        assert _fields(spec["key"])[0] == "ns"


def test_messages_shard_key_keeps_a_conversation_together() -> None:
    # Equality on (ns, cid) targets one hashed value: "last N" is a single-shard read, and
    # seq after the hashed field lets a huge conversation split instead of going jumbo.
    assert _fields(schema.SHARD_KEYS["messages"]) == ["ns", "cid", "seq"]
    assert schema.QUERY_PREFIX["messages"] == ("ns", "cid")


@pytest.mark.parametrize(
    ("mode", "hello", "expected"),
    [
        ("auto", {"setName": "rs0", "logicalSessionTimeoutMinutes": 30}, True),
        ("auto", {"msg": "isdbgrid", "logicalSessionTimeoutMinutes": 30}, True),
        ("auto", {"logicalSessionTimeoutMinutes": 30}, False),  # standalone / FerretDB v1
        ("auto", {"setName": "rs0"}, False),  # no sessions, no transactions
        ("on", {}, True),
        ("off", {"setName": "rs0", "logicalSessionTimeoutMinutes": 30}, False),
    ],
)
def test_use_transactions(mode: str, hello: dict[str, Any], expected: bool) -> None:
    assert schema.use_transactions(mode, hello) is expected


def test_deployment_facts() -> None:
    assert schema.is_mongos({"msg": "isdbgrid"})
    assert not schema.is_mongos({"setName": "rs0"})
    assert schema.has_atomic_updates({"version": "7.0.0"})
    assert not schema.has_atomic_updates({"version": "7.0.42", "ferretdbVersion": "v1.24.2"})


@pytest.mark.parametrize("value", ["0", "w1", "", "majority "])
def test_write_concern_setting_rejects_unacknowledged_and_junk(value: str) -> None:
    from pydantic import ValidationError

    from memstore.core.settings import Settings

    with pytest.raises(ValidationError):
        Settings(mongodb_write_concern=value)
    assert Settings(mongodb_write_concern="2").mongodb_write_concern == "2"


def test_client_options_precedence_setting_then_uri_then_default() -> None:
    from memstore.backends.mongodb.backend import client_options, uri_option_names
    from memstore.core.settings import Settings

    uri = "mongodb://u:p%3Fw@h1:1,h2:2/db?serverSelectionTimeoutMS=500&w=2&replicaSet=rs0"
    names = uri_option_names(uri)
    assert names == {"serverSelectionTimeoutMS", "w", "replicaSet"}
    defaults = client_options(Settings(), names)
    # The URI's own values stand where no setting was given explicitly ...
    assert "serverSelectionTimeoutMS" not in defaults
    assert "w" not in defaults
    # ... and the project's defaults fill in what the URI leaves out.
    assert defaults["journal"] is True
    assert defaults["retryWrites"] is True
    assert "timeoutMS" not in defaults  # not set unless asked: it would replace selection
    assert client_options(Settings(mongodb_timeout_ms=2500), names)["timeoutMS"] == 2500
    # An explicit setting beats the URI.
    explicit = client_options(
        Settings(mongodb_write_concern="majority", mongodb_server_selection_timeout_ms=900),
        names,
    )
    assert explicit["w"] == "majority"
    assert explicit["serverSelectionTimeoutMS"] == 900
    assert client_options(Settings(), set())["w"] == "majority"


def test_uri_hosts_never_include_credentials() -> None:
    from memstore.backends.mongodb.backend import uri_hosts

    assert uri_hosts("mongodb://user:s3cr3t@h1:27017,h2:27018/db?x=1") == ["h1:27017", "h2:27018"]
    assert uri_hosts("mongodb+srv://user:p%40ss@cluster.example.net/?tls=true") == [
        "cluster.example.net"
    ]
    assert uri_hosts("mongodb://localhost") == ["localhost"]
