"""The change log's vocabulary: what kinds of change there are, and who made one.

Every write appends one :class:`~memstore.core.records.ChangeEvent` to its namespace's
change log, in the same atomic step as the write where the backend allows it (see each
backend's docstring). The kinds below are the whole list; the feed, the audit export and
webhooks filter by them.

Who made a change is the *actor*: the token's name and the client's address when the
change came through the HTTP API (the server sets it per request), or whatever an
in-process caller declares with :func:`acting_as`. Backends read it with
:func:`current_actor` when they write the event, so no write method needs an extra
argument. The actor never holds a secret (a token's name, never the token).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from memstore.core.records import ChangeEvent

ENTITY_SAVED: Final = "entity.saved"
ENTITY_DELETED: Final = "entity.deleted"
ENTITY_EXPIRED: Final = "entity.expired"
ENTITY_PRUNED: Final = "entity.pruned"
CONVERSATION_APPENDED: Final = "conversation.appended"
CONVERSATION_REPLACED: Final = "conversation.replaced"
CONVERSATION_POPPED: Final = "conversation.popped"
CONVERSATION_DELETED: Final = "conversation.deleted"
CONVERSATION_PRUNED: Final = "conversation.pruned"
CONVERSATION_TRIMMED: Final = "conversation.trimmed"
TOOL_USAGE_RECORDED: Final = "tool_usage.recorded"
TOOL_USAGE_PRUNED: Final = "tool_usage.pruned"
FEEDBACK_SAVED: Final = "feedback.saved"
FEEDBACK_PRUNED: Final = "feedback.pruned"

#: Every kind, in the order the docs list them.
CHANGE_KINDS: Final = (
    ENTITY_SAVED,
    ENTITY_DELETED,
    ENTITY_EXPIRED,
    ENTITY_PRUNED,
    CONVERSATION_APPENDED,
    CONVERSATION_REPLACED,
    CONVERSATION_POPPED,
    CONVERSATION_DELETED,
    CONVERSATION_PRUNED,
    CONVERSATION_TRIMMED,
    TOOL_USAGE_RECORDED,
    TOOL_USAGE_PRUNED,
    FEEDBACK_SAVED,
    FEEDBACK_PRUNED,
)


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    """What a change-feed reader wants (``None``: any). ``kinds`` from ``CHANGE_KINDS``;
    ``entity_type`` matches entity events of that type; ``conversation_id`` matches the
    conversation's events and the tool uses recorded in it. Checked by
    ``memstore.core.validation.check_change_filter``."""

    kinds: frozenset[str] | None = None
    entity_type: str | None = None
    conversation_id: str | None = None

    @property
    def everything(self) -> bool:
        return self.kinds is None and self.entity_type is None and self.conversation_id is None

    def matches(self, event: ChangeEvent) -> bool:
        return (
            (self.kinds is None or event.kind in self.kinds)
            and (self.entity_type is None or event.entity_type == self.entity_type)
            and (self.conversation_id is None or event.conversation_id == self.conversation_id)
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is writing: a token's name (``None`` when auth is off) and the client address."""

    name: str | None = None
    address: str | None = None


_CURRENT_ACTOR: ContextVar[Actor | None] = ContextVar("memstore_actor", default=None)


def current_actor() -> Actor | None:
    """The actor of the running task's writes, or ``None`` when nobody declared one."""
    return _CURRENT_ACTOR.get()


def current_actor_name() -> str | None:
    """The name version history records as who wrote a version (never the address)."""
    actor = _CURRENT_ACTOR.get()
    return None if actor is None else actor.name


#: The actor of the tombstones retention leaves when it prunes an entity.
RETENTION_ACTOR: Final = "retention"


class _ActingAs:
    """The ``with`` block of :func:`acting_as`: a class, not a generator, because the server
    enters one per request (a generator-based context manager costs several times more)."""

    __slots__ = ("_actor", "_token")

    def __init__(self, actor: Actor | None) -> None:
        self._actor = actor

    def __enter__(self) -> None:
        self._token = _CURRENT_ACTOR.set(self._actor)

    def __exit__(self, *exc: object) -> None:
        _CURRENT_ACTOR.reset(self._token)


def acting_as(actor: Actor | None) -> _ActingAs:
    """Record ``actor`` on the change events of the writes made inside the block."""
    return _ActingAs(actor)
