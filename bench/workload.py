"""Payloads and seeding shared by every scenario (deterministic, so runs are comparable)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

NAMESPACE = "bench"
ENTITY_TYPE = "doc"
ENTITIES = 1000  # all fit in the service's default cache (10,000 entries)
CONVERSATIONS = 20
MESSAGES_PER_CONVERSATION = 100


def entity_data(size: int = 1024) -> dict[str, Any]:
    """A JSON object of about ``size`` bytes, shaped like agent memory (no "id" keys: the
    PUT script finds the entity id in the response by its first ``"id"``)."""
    base: dict[str, Any] = {
        "kind": "observation",
        "title": "User prefers concise answers with code examples",
        "tags": ["preference", "style", "python"],
        "confidence": 0.87,
        "source": {"agent": "planner", "step": 42, "tool": "search"},
        "body": "",
    }
    filler = size - len(orjson.dumps(base))
    base["body"] = ("lorem ipsum dolor sit amet " * (1 + size // 27))[: max(0, filler)]
    return base


def message() -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "I looked it up: the API returns paginated results; use the cursor. " * 3,
        "meta": {"tokens": 96, "model": "m-1"},
    }


def tool_body() -> dict[str, Any]:
    return {
        "tool_name": "web_search",
        "input": {"query": "redis cluster hash tags", "top_k": 5},
        "output": {"results": [{"title": f"result {i}", "score": 0.9 - i / 10} for i in range(5)]},
        "duration_ms": 182.5,
        "success": True,
    }


def put_body(size: int = 1024) -> str:
    return orjson.dumps({"data": entity_data(size)}).decode()


def append_body() -> str:
    return orjson.dumps({"messages": [message()]}).decode()


async def seed(
    url: str,
    *,
    namespace: str = NAMESPACE,
    entities: int = ENTITIES,
    conversations: int = CONVERSATIONS,
    messages: int = MESSAGES_PER_CONVERSATION,
    read_back: bool = True,
) -> None:
    """Create the entities and conversations the read scenarios use, through the HTTP API
    of ``url`` (the service or the baseline; both speak it). Reading every entity back once
    fills the service's cache for the cache-hit scenario."""
    ent = orjson.dumps({"data": entity_data()})
    msgs = orjson.dumps({"messages": [message() for _ in range(messages)]})
    base = f"{url}/v1/namespaces/{namespace}"
    sem = asyncio.Semaphore(16)
    hdr = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, body: bytes | None = None) -> None:
            async with sem, http.request(method, base + path, data=body, headers=hdr) as r:
                if r.status >= 300:
                    raise RuntimeError(f"seed {method} {path}: {r.status} {await r.text()}")
                await r.read()

        await asyncio.gather(
            *(call("PUT", f"/entities/{ENTITY_TYPE}/e{i}", ent) for i in range(entities))
        )
        await asyncio.gather(
            *(call("POST", f"/conversations/c{i}/messages", msgs) for i in range(conversations))
        )
    if read_back:
        await read_all(url, namespace=namespace, entities=entities)


async def read_all(url: str, *, namespace: str = NAMESPACE, entities: int = ENTITIES) -> None:
    """GET every seeded entity once (fills a service process's local cache)."""
    base = f"{url}/v1/namespaces/{namespace}/entities/{ENTITY_TYPE}/"
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def get(i: int) -> None:
            async with sem, http.get(f"{base}e{i}") as r:
                if r.status != 200:
                    raise RuntimeError(f"read e{i}: {r.status}")
                await r.read()

        await asyncio.gather(*(get(i) for i in range(entities)))
