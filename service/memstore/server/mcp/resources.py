"""MCP resources (entities, conversations, a namespace's summary) and the change feed.

URIs (names never hold ``/``, so each part is unambiguous)::

    memstore://<namespace>/entities/<entity_type>/<entity_id>
    memstore://<namespace>/conversations/<conversation_id>
    memstore://<namespace>/summary

``ChangeFeed`` is the SDK's ``SubscriptionBus`` over the memory's change keys: the manager
tells it of every change it learns of (``DistributedMemoryManager.add_change_listener``:
this process's writes and, through the backend's invalidation bus, other replicas' entity
and conversation writes), and it hands ``ResourceUpdated`` events to the open
``subscriptions/listen`` streams of this process, which the SDK's ``ListenHandler`` filters
by the URIs each one asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp_types import ReadResourceResult, ResourceTemplate, TextResourceContents

from memstore.core.errors import InvalidInputError, NotFoundError
from memstore.core.keys import CONVERSATION_KEY_PREFIX, ENTITY_KEY_PREFIX
from memstore.core.validation import check_name
from memstore.memory.api import MemoryAPI

log = logging.getLogger(__name__)

SCHEME = "memstore://"
JSON = "application/json"
#: Messages a conversation resource shows: the latest ones (the read_conversation tool
#: pages further back).
CONVERSATION_TAIL = 50

TEMPLATES = [
    ResourceTemplate(
        name="entity",
        uri_template=SCHEME + "{namespace}/entities/{entity_type}/{entity_id}",
        description="An entity: its JSON data, version and timestamps.",
        mime_type=JSON,
    ),
    ResourceTemplate(
        name="conversation",
        uri_template=SCHEME + "{namespace}/conversations/{conversation_id}",
        description=f"A conversation's latest {CONVERSATION_TAIL} messages.",
        mime_type=JSON,
    ),
    ResourceTemplate(
        name="summary",
        uri_template=SCHEME + "{namespace}/summary",
        description="Counts of what a namespace holds.",
        mime_type=JSON,
    ),
]


@dataclass(frozen=True)
class ResourceRef:
    """A parsed URI: ``kind`` is ``entity``, ``conversation`` or ``summary``."""

    namespace: str
    kind: str
    parts: tuple[str, ...] = ()


def entity_uri(namespace: str, entity_type: str, entity_id: str) -> str:
    return f"{SCHEME}{namespace}/entities/{entity_type}/{entity_id}"


def conversation_uri(namespace: str, conversation_id: str) -> str:
    return f"{SCHEME}{namespace}/conversations/{conversation_id}"


def summary_uri(namespace: str) -> str:
    return f"{SCHEME}{namespace}/summary"


def parse_uri(uri: str) -> ResourceRef:
    """The resource ``uri`` names; ``InvalidInputError`` naming ``uri`` otherwise."""
    if not uri.startswith(SCHEME):
        raise InvalidInputError(f"not a memstore resource: URIs start with {SCHEME}", field="uri")
    parts = uri[len(SCHEME) :].split("/")
    match parts:
        case [namespace, "entities", entity_type, entity_id]:
            check_name("entity_type", entity_type)
            check_name("entity_id", entity_id)
            ref = ResourceRef(namespace, "entity", (entity_type, entity_id))
        case [namespace, "conversations", conversation_id]:
            check_name("conversation_id", conversation_id)
            ref = ResourceRef(namespace, "conversation", (conversation_id,))
        case [namespace, "summary"]:
            ref = ResourceRef(namespace, "summary")
        case _:
            raise InvalidInputError(
                "unknown memstore resource: memstore://<namespace>/entities/<type>/<id>, "
                "/conversations/<id> or /summary",
                field="uri",
            )
    check_name("namespace", ref.namespace)
    return ref


async def read_resource(memory: MemoryAPI, uri: str, ref: ResourceRef) -> ReadResourceResult:
    """Read ``ref`` from ``memory`` (already the view of ``ref.namespace``)."""
    if ref.kind == "entity":
        entity_type, entity_id = ref.parts
        record = await memory.get_entity(entity_type, entity_id)
        if record is None:
            raise NotFoundError(f"entity {entity_type}/{entity_id} does not exist")
        body = record.to_dict()
    elif ref.kind == "conversation":
        (conversation_id,) = ref.parts
        messages = await memory.load_messages(conversation_id, limit=CONVERSATION_TAIL)
        if not messages:
            raise NotFoundError(f"conversation {conversation_id} does not exist")
        body = {"conversation_id": conversation_id, "items": [m.to_dict() for m in messages]}
    else:
        body = (await memory.get_memory_summary_data()).to_dict()
    text = orjson.dumps(body).decode()
    return ReadResourceResult(contents=[TextResourceContents(uri=uri, mime_type=JSON, text=text)])


class ChangeFeed:
    """``SubscriptionBus`` (the SDK's protocol) fed by memory change keys."""

    def __init__(self) -> None:
        self._listeners: dict[object, Callable[[ServerEvent], None]] = {}

    async def publish(self, event: ServerEvent) -> None:
        self._deliver(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    def changed(self, key: str | None) -> None:
        """A ``ChangeListener`` of the manager: ``entity/<ns>/<type>/<id>`` or
        ``conversation/<ns>/<id>``; ``None`` (changes may have been missed) tells every
        stream that asked for list changes."""
        if not self._listeners:
            return
        if key is None:
            self._deliver(ResourcesListChanged())
            return
        parts = key.split("/")
        if key.startswith(ENTITY_KEY_PREFIX) and len(parts) == 4:
            self._deliver(ResourceUpdated(uri=entity_uri(*parts[1:])))
        elif key.startswith(CONVERSATION_KEY_PREFIX) and len(parts) == 3:
            self._deliver(ResourceUpdated(uri=conversation_uri(*parts[1:])))

    def _deliver(self, event: ServerEvent) -> None:
        for listener in list(self._listeners.values()):
            try:
                listener(event)
            except Exception:
                log.exception("subscription listener failed")
