"""A write load against a live service that remembers exactly what was acknowledged.

Each worker writes entities ``w{n}-{i}`` and appends ``{"w": n, "i": i}`` to conversation
``conv-w{n}``; a write counts as acknowledged only when its 2xx response arrived. After a
crash, :func:`verify` checks that every acknowledged write is there, intact, and that every
conversation is well formed (``seq`` 1..n without gaps, no duplicates).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PAD = "p" * 200


@dataclass
class Ledger:
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> data
    messages: dict[str, list[int]] = field(default_factory=dict)  # conversation -> i values
    errors: int = 0
    attempts: int = 0

    @property
    def acknowledged(self) -> int:
        return len(self.entities) + sum(len(v) for v in self.messages.values())


async def write_load(
    base: str,
    namespace: str,
    ledger: Ledger,
    *,
    workers: int,
    stop: asyncio.Event,
    headers: dict[str, str] | None = None,
    on_ack: Callable[[], None] | None = None,
) -> None:
    """Write until ``stop`` is set; failures are counted, never retried (a retried append
    could duplicate a message whose first attempt landed)."""
    ns = f"{base}/v1/namespaces/{namespace}"
    timeout = aiohttp.ClientTimeout(total=10)

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        conv = f"conv-w{n}"
        ledger.messages.setdefault(conv, [])
        i = 0
        while not stop.is_set():
            i += 1
            eid = f"w{n}-{i}"
            data = {"w": n, "i": i, "pad": PAD}
            for method, url, body, record in (
                ("PUT", f"{ns}/entities/load/{eid}", {"data": data}, "entity"),
                ("POST", f"{ns}/conversations/{conv}/messages", {"messages": [{"w": n, "i": i}]},
                 "message"),
            ):  # fmt: skip
                ledger.attempts += 1
                try:
                    async with session.request(method, url, json=body, headers=headers) as resp:
                        await resp.read()
                        ok = 200 <= resp.status < 300
                except (aiohttp.ClientError, TimeoutError, OSError):
                    ok = False
                if not ok:
                    ledger.errors += 1
                    await asyncio.sleep(0.05)
                    continue
                if record == "entity":
                    ledger.entities[eid] = data
                else:
                    ledger.messages[conv].append(i)
                if on_ack is not None:
                    on_ack()

    async with aiohttp.ClientSession(timeout=timeout) as session:
        # The workers see ``stop`` and finish the request in hand (each ends within its
        # timeout). Cancelling them instead could cut a connection attempt short, and the
        # client library then leaves that socket unclosed (a ResourceWarning, an error here).
        await asyncio.gather(*(worker(n, session) for n in range(workers)))


@dataclass
class Verdict:
    lost_entities: list[str]
    corrupt_entities: list[str]
    lost_messages: int
    bad_conversations: list[str]

    @property
    def lost(self) -> int:
        return len(self.lost_entities) + self.lost_messages


async def verify(
    base: str, namespace: str, ledger: Ledger, headers: dict[str, str] | None = None
) -> Verdict:
    ns = f"{base}/v1/namespaces/{namespace}"
    lost: list[str] = []
    corrupt: list[str] = []
    lost_messages = 0
    bad: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        sem = asyncio.Semaphore(16)

        async def check_entity(eid: str, data: dict[str, Any]) -> None:
            async with sem, session.get(f"{ns}/entities/load/{eid}", headers=headers) as resp:
                if resp.status == 404:
                    lost.append(eid)
                    return
                body = await resp.json()
                if resp.status != 200 or body["data"] != data:
                    corrupt.append(eid)

        await asyncio.gather(*(check_entity(e, d) for e, d in ledger.entities.items()))
        for conv, acked in ledger.messages.items():
            items: list[dict[str, Any]] = []
            before: int | None = None
            while True:
                params = {"limit": "500", **({"before": str(before)} if before else {})}
                async with session.get(
                    f"{ns}/conversations/{conv}/messages", params=params, headers=headers
                ) as resp:
                    body = await resp.json()
                if resp.status == 404:
                    # Not there at all (e.g. a secondary the conversation was not copied
                    # to yet): every acknowledged message of it counts as lost.
                    break
                assert resp.status == 200, (conv, resp.status, body)
                items = body["items"] + items
                before = body["next_before"]
                if before is None:
                    break
            seqs = [m["seq"] for m in items]
            values = [m["message"]["i"] for m in items]
            if seqs != list(range(1, len(seqs) + 1)) or len(set(values)) != len(values):
                bad.append(conv)
            present = set(values)
            lost_messages += sum(1 for i in acked if i not in present)
    return Verdict(sorted(lost), sorted(corrupt), lost_messages, sorted(bad))
