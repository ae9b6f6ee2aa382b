"""The numeric bounds table (``memstore.core.bounds``): the manager, the HTTP API, its
document and the settings apply the same intervals, edges included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from aiohttp.test_utils import TestClient
from annotated_types import Interval
from pydantic import TypeAdapter, ValidationError

from memstore.core import bounds
from memstore.core.errors import InvalidInputError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager

Client = TestClient[Any, Any]
NS = "/v1/namespaces/bounds"


@pytest.fixture
async def manager(api_settings: Settings) -> AsyncIterator[DistributedMemoryManager]:
    # A file of its own: the service under test owns api_settings' file.
    settings = api_settings.model_copy(
        update={"data_path": api_settings.data_path.with_name("in-process.db")}
    )
    async with DistributedMemoryManager(settings=settings, namespace="bounds") as m:
        yield m


@pytest.mark.parametrize(
    ("bound", "text"),
    [
        (bounds.TTL_SECONDS, "(0, 315360000]"),
        (bounds.TIMESTAMP_SECONDS, "[0, 1e+11)"),
        (bounds.BODY_BYTES, "[1024, inf)"),
        (Interval(), "(-inf, inf)"),
    ],
)
def test_describe(bound: Interval, text: str) -> None:
    assert bounds.describe(bound) == text


@pytest.mark.parametrize(
    "bound", [bounds.TTL_SECONDS, bounds.TIMESTAMP_SECONDS, bounds.DURATION_MS, bounds.PAGE_SIZE]
)
def test_the_schema_and_the_check_are_pydantics(bound: Interval) -> None:
    """``json_schema`` and ``contains`` say what pydantic says for the same interval."""

    adapter: TypeAdapter[float] = TypeAdapter(Annotated[float, bound])
    schema = adapter.json_schema()
    schema.pop("type")
    assert bounds.json_schema(bound) == schema
    edges = list(bounds.json_schema(bound).values())
    for value in [*edges, *(e - 0.5 for e in edges), *(e + 0.5 for e in edges)]:
        try:
            adapter.validate_python(value)
            accepted = True
        except ValidationError:
            accepted = False
        assert bounds.contains(bound, value) == accepted, value


def edge(bound: Interval, keyword: str) -> float:
    """One end of ``bound`` as a number (annotated_types types them as comparables)."""
    value: float = bounds.json_schema(bound)[keyword]
    return value


TTL_MAX = edge(bounds.TTL_SECONDS, "maximum")
TIME_END = edge(bounds.TIMESTAMP_SECONDS, "exclusiveMaximum")
DURATION_END = edge(bounds.DURATION_MS, "exclusiveMaximum")
PAGE_MAX = edge(bounds.PAGE_SIZE, "maximum")
CACHE_TTL_MAX = edge(bounds.CACHE_TTL_SECONDS, "maximum")
BODY_MIN = edge(bounds.BODY_BYTES, "minimum")


async def test_the_document_reads_the_table(spec: Any) -> None:
    doc = spec.doc
    put = doc["components"]["schemas"]["EntityPut"]["properties"]["ttl_seconds"]["anyOf"][0]
    assert (put["exclusiveMinimum"], put["maximum"]) == (0, TTL_MAX)
    tool = doc["components"]["schemas"]["ToolUsageIn"]["properties"]
    assert tool["duration_ms"]["exclusiveMaximum"] == DURATION_END
    assert tool["timestamp"]["anyOf"][0]["exclusiveMaximum"] == TIME_END
    params = doc["paths"][NS.replace("bounds", "{namespace}") + "/tool-usage"]["get"]
    start = next(p for p in params["parameters"] if p["name"] == "start")
    assert start["schema"] == {"type": "number", **bounds.json_schema(bounds.TIMESTAMP_SECONDS)}


@pytest.mark.parametrize(
    ("ttl", "ok"), [(TTL_MAX, True), (TTL_MAX + 1, False), (0, False), (0.001, True)]
)
async def test_ttl_edges_agree(
    http: Client, manager: DistributedMemoryManager, ttl: float, ok: bool
) -> None:
    resp = await http.put(f"{NS}/entities/e/http", json={"data": {}, "ttl_seconds": ttl})
    assert (resp.status < 300) == ok, await resp.text()
    if ok:
        await manager.save_entity("e", "local", {}, ttl=ttl)
    else:
        with pytest.raises(InvalidInputError):
            await manager.save_entity("e", "local", {}, ttl=ttl)


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("timestamp", TIME_END, False),
        ("timestamp", TIME_END - 1, True),
        ("timestamp", -1, False),
        ("duration_ms", DURATION_END, False),
        ("duration_ms", DURATION_END - 1, True),
        ("duration_ms", -0.5, False),
    ],
)
async def test_tool_usage_edges_agree(
    http: Client, manager: DistributedMemoryManager, field: str, value: float, ok: bool
) -> None:
    resp = await http.post(f"{NS}/tool-usage", json={"tool_name": "t", field: value})
    assert (resp.status < 300) == ok, await resp.text()
    kwargs: dict[str, Any] = {field: value}
    if ok:
        await manager.save_tool_usage("t", None, None, **kwargs)
    else:
        with pytest.raises(InvalidInputError):
            await manager.save_tool_usage("t", None, None, **kwargs)


@pytest.mark.parametrize(("value", "status"), [(TIME_END - 1, 200), (TIME_END, 400)])
async def test_query_time_edges(http: Client, value: float, status: int) -> None:
    resp = await http.get(f"{NS}/tool-usage", params={"end": repr(value)})
    assert resp.status == status, await resp.text()


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("max_page_size", PAGE_MAX, True),
        ("max_page_size", PAGE_MAX + 1, False),
        ("cache_ttl_seconds", CACHE_TTL_MAX, True),
        ("cache_ttl_seconds", CACHE_TTL_MAX + 1, False),
        ("max_body_bytes", BODY_MIN, True),
        ("max_body_bytes", BODY_MIN - 1, False),
    ],
)
def test_settings_read_the_table(name: str, value: Any, ok: bool) -> None:
    if ok:
        assert getattr(Settings(**{name: value}), name) == value
    else:
        with pytest.raises(ValidationError):
            Settings(**{name: value})
