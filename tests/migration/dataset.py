"""The dataset the old-format fixtures hold, and the reads that compare old and new.

``write_dataset`` goes through a backend's public methods only, so it runs unchanged on
the release that wrote the fixtures; ``read_everything`` reads back every kind of record
(and the change log) as plain JSON, the shape both releases must agree on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.records import FeedbackRecord, ToolUsageRecord

NAMESPACES = ["mig-a", "mig-b"]

#: Far enough ahead that the fixture's TTL entity is still alive whenever the test runs.
LONG_TTL = 50 * 365 * 24 * 3600.0

_PROFILE = {
    "name": "Zoë Ångström",
    "notes": "prefers metric units; 日本語もOK; emoji 🧠",
    "scores": [1, 2.5, -3, 1e300],
    "nested": {"deep": {"deeper": [None, True, False, {"k": "v"}]}},
    "long": "lorem ipsum dolor sit amet " * 40,
}


async def write_dataset(backend: DistributedMemoryBackend) -> None:
    for ns in NAMESPACES:
        # entities: several types, a few versions, a TTL, a deleted one
        for i in range(3):
            await backend.save_entity(ns, "user", f"u{i}", {**_PROFILE, "i": i})
        await backend.save_entity(ns, "user", "u0", {**_PROFILE, "i": 0, "v": 2})
        await backend.save_entity(ns, "user", "u0", {**_PROFILE, "i": 0, "v": 3})
        await backend.save_entity(ns, "project", "p1", {"title": f"{ns} project", "tags": []})
        await backend.save_entity(ns, "session", "s1", {"ephemeral": True}, ttl=LONG_TTL)
        await backend.save_entity(ns, "project", "gone", {"x": 1})
        await backend.delete_entity(ns, "project", "gone")

        # conversations: appended, replaced, popped
        await backend.append_messages(
            ns, "c1", [{"role": "user", "content": f"hello {n} ✓"} for n in range(5)]
        )
        await backend.append_messages(ns, "c1", [{"role": "assistant", "content": "hi"}])
        await backend.append_messages(ns, "c2", [{"role": "user", "content": "first"}])
        await backend.replace_conversation(
            ns, "c2", [{"role": "system", "content": "replaced"}, {"role": "user", "content": "x"}]
        )
        await backend.append_messages(ns, "c3", [{"role": "user", "content": "a"}] * 3)
        await backend.pop_message(ns, "c3")

        # tool usage and feedback, with fixed ids and times
        for n in range(5):
            await backend.record_tool_usage(
                ns,
                ToolUsageRecord(
                    id=f"{ns}-t{n}",
                    tool_name="search" if n % 2 else "fetch",
                    input={"q": f"query {n}"},
                    output={"results": [n, n + 1]} if n != 3 else "error: timeout",
                    duration_ms=10.0 * (n + 1),
                    success=n != 3,
                    timestamp=1_700_000_000.0 + n,
                    conversation_id="c1" if n < 2 else None,
                ),
            )
        for n in range(3):
            await backend.save_feedback(
                ns,
                FeedbackRecord(
                    id=f"{ns}-f{n}",
                    agent_name="planner",
                    feedback_type="rating",
                    data={"rating": n + 3, "comment": f"ok {n}"},
                    timestamp=1_700_000_100.0 + n,
                ),
            )


def _rows(items: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(item) for item in items]


async def read_everything(backend: DistributedMemoryBackend) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ns in NAMESPACES:
        entities: list[dict[str, Any]] = []
        for entity_type in await backend.get_entity_types(ns):
            cursor: str | None = None
            while True:
                page = await backend.list_entities(ns, entity_type, limit=2, cursor=cursor)
                entities += _rows(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
        conversations = []
        cursor = None
        while True:
            conv_page = await backend.list_conversations(ns, limit=2, cursor=cursor)
            for info in conv_page.items:
                messages = await backend.load_messages(ns, info.conversation_id)
                conversations.append(
                    {"info": dataclasses.asdict(info), "messages": _rows(messages)}
                )
            cursor = conv_page.next_cursor
            if cursor is None:
                break
        tool_page = await backend.query_tool_usage(ns, limit=1000)
        feedback_page = await backend.query_feedback(ns, limit=1000)
        changes = await backend.read_changes(ns, after=0, limit=1000)
        summary = await backend.summary(ns)
        out[ns] = {
            "entities": entities,
            "conversations": conversations,
            "tool_usage": _rows(tool_page.items),
            "tool_names": await backend.get_tool_names(ns),
            "feedback": _rows(feedback_page.items),
            "changes": {
                "events": _rows(changes.events),
                "first_position": changes.first_position,
                "last_position": changes.last_position,
            },
            "summary": dataclasses.asdict(summary),
        }
    return out
