"""The keys that name a change: the manager's entity cache keys and its change hook, the
Redis write scripts that publish them to the other replicas, and MCP's resource
notifications all read and write this one format. "/" cannot occur in validated names,
so a key is unambiguous."""

ENTITY_KEY_PREFIX = "entity/"
CONVERSATION_KEY_PREFIX = "conversation/"


def entity_cache_key(namespace: str, entity_type: str, entity_id: str) -> str:
    """An entity's key: its cache entry in the manager, and its change."""
    return f"{ENTITY_KEY_PREFIX}{namespace}/{entity_type}/{entity_id}"


def conversation_change_key(namespace: str, conversation_id: str) -> str:
    """A conversation's change key (never cached: the cache holds entities only)."""
    return f"{CONVERSATION_KEY_PREFIX}{namespace}/{conversation_id}"


DATA_KEY_PREFIX = "data-key/"


def data_key_change_key(namespace: str) -> str:
    """Announces that a namespace's data key was deleted or re-wrapped (at-rest encryption)."""
    return f"{DATA_KEY_PREFIX}{namespace}"
