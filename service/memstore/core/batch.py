"""Checks of batch writes (``save_entities``, ``append_messages_batch``), shared by the
manager and the client: every item is checked before anything is written, and an error
names the item (``item``: its index) and what is wrong with it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from memstore.core.bounds import MAX_BATCH_ITEMS
from memstore.core.errors import InvalidInputError
from memstore.core.records import EntityWrite, MessagesWrite
from memstore.core.validation import check_conversation_id, check_entity_write, check_messages

T = TypeVar("T")


def _check_items(
    kind: type[T], items: object, check: Callable[[T], T], key: Callable[[T], object]
) -> list[T]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise InvalidInputError("items must be a list", field="items")
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise InvalidInputError(
            f"a batch holds 1 to {MAX_BATCH_ITEMS} items, not {len(items)}",
            field="items",
            limit=MAX_BATCH_ITEMS,
        )
    checked: list[T] = []
    seen: dict[object, int] = {}
    for i, item in enumerate(items):
        try:
            if not isinstance(item, kind):
                raise InvalidInputError(f"must be a {kind.__name__}", field="items")
            item = check(item)
        except InvalidInputError as exc:
            raise _at(i, exc) from exc
        k = key(item)
        if k in seen:
            raise InvalidInputError(
                f"item {i}: the same key as item {seen[k]}; a batch writes each key once",
                field="items",
                item=i,
            )
        seen[k] = i
        checked.append(item)
    return checked


def _at(i: int, exc: InvalidInputError) -> InvalidInputError:
    """``exc`` (its class kept: a payload too large stays a 413) for item ``i``."""
    return type(exc)(f"item {i}: {exc.message}", **{**exc.details, "item": i})


def check_entity_batch(items: object, max_bytes: int | None) -> list[EntityWrite]:
    """``save_entities``: the items checked as ``save_entity`` checks one, each with its
    data's JSON; distinct keys."""

    def check(item: EntityWrite) -> EntityWrite:
        data_json, ttl, expected = check_entity_write(
            item.entity_type, item.entity_id, item.data, item.ttl, item.expected_version, max_bytes
        )
        return EntityWrite(item.entity_type, item.entity_id, item.data, expected, ttl, data_json)

    return _check_items(EntityWrite, items, check, lambda w: (w.entity_type, w.entity_id))


def check_messages_batch(
    items: object, *, max_count: int | None, max_bytes: int | None
) -> list[MessagesWrite]:
    """``append_messages_batch``: each item as ``append_messages`` checks one; distinct
    conversations; ``max_count`` bounds the messages of the whole batch."""
    total = 0

    def check(item: MessagesWrite) -> MessagesWrite:
        nonlocal total
        cid = check_conversation_id(item.conversation_id)
        messages, raws = check_messages(
            item.messages, max_count=max_count, max_bytes=max_bytes, allow_empty=False
        )
        total += len(messages)
        if max_count is not None and total > max_count:
            raise InvalidInputError(
                f"at most {max_count} messages per request (the whole batch)",
                field="messages",
                limit=max_count,
            )
        return MessagesWrite(cid, messages, tuple(raws))

    return _check_items(MessagesWrite, items, check, lambda w: w.conversation_id)
