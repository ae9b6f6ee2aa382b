"""The real aiohttp app on a real loopback socket, plus an OpenAPI response checker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient
from memstore.core.settings import Settings
from memstore.server.app import create_app


class SpecChecker:
    """Validates real responses against the server's own /openapi.json."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def check(self, method: str, template: str, status: int, body: Any) -> None:
        op = self.doc["paths"][template][method.lower()]
        assert str(status) in op["responses"], f"{method} {template} answered undocumented {status}"
        content = op["responses"][str(status)].get("content")
        if content is None:
            return
        schema = content.get("application/json", {}).get("schema")
        if schema is None:
            return
        resolver_doc = {**schema, "components": self.doc["components"]}
        jsonschema.validate(body, resolver_doc, cls=jsonschema.Draft202012Validator)


@pytest.fixture
def api_settings(embedded_settings: Settings) -> Settings:
    return embedded_settings.model_copy(update={"max_body_bytes": 64 * 1024, "max_page_size": 50})


@pytest.fixture
async def http(api_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(api_settings))) as client:
        yield client


@pytest.fixture
async def spec(http: TestClient[Any, Any]) -> SpecChecker:
    resp = await http.get("/openapi.json")
    assert resp.status == 200
    return SpecChecker(await resp.json())


@pytest.fixture
async def remote(http: TestClient[Any, Any]) -> AsyncIterator[MemoryClient]:
    url = str(http.make_url("/")).rstrip("/")
    async with MemoryClient(url, namespace="agent") as client:
        yield client
