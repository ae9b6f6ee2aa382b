"""``/ui`` over HTTP: when it is served, what its answers carry (a CSP without inline
scripts), that it serves its fixed files only, and that the vendored chart library is the
released one."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.core.settings import Settings
from memstore.server.app import create_app
from memstore.server.auth import hash_token
from memstore.server.inspector import ASSETS

Client = TestClient[Any, Any]


@pytest.fixture
async def make_http(embedded_settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    clients: list[Client] = []

    async def make(**overrides: Any) -> Client:
        client: Client = TestClient(
            TestServer(
                create_app(embedded_settings.model_copy(update={"embedder": "none", **overrides}))
            )
        )
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_bytes(orjson.dumps({"tokens": [
        {"name": "a", "sha256": hash_token("token-a"), "namespaces": ["a"], "roles": ["read"]},
    ]}))  # fmt: skip
    return path


def test_served_without_auth_unless_switched_off() -> None:
    assert Settings(auth_enabled=False).ui_served
    assert not Settings(auth_enabled=False, ui_enabled=False).ui_served
    assert not Settings(auth_enabled=True).ui_served
    assert Settings(auth_enabled=True, ui_enabled=True).ui_served


def test_the_environment_switches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTORE_UI_ENABLED", "true")
    monkeypatch.setenv("MEMSTORE_AUTH_ENABLED", "true")
    assert Settings().ui_served


async def test_off_by_default_with_auth(make_http: Any, tokens_file: Path) -> None:
    http = await make_http(auth_enabled=True, auth_tokens_file=tokens_file)
    # Not a route at all: an unknown path, answered like any other (a token first).
    for path in ("/ui", "/ui/inspector.js"):
        assert (await http.get(path)).status == 401
        resp = await http.get(path, headers={"Authorization": "Bearer token-a"})
        assert resp.status == 404


async def test_open_with_auth_when_enabled(make_http: Any, tokens_file: Path) -> None:
    """A browser cannot send a bearer token when it loads a page: the page and its files
    are open; the data behind them is not."""
    http = await make_http(auth_enabled=True, auth_tokens_file=tokens_file, ui_enabled=True)
    resp = await http.get("/ui")
    assert resp.status == 200
    assert (await http.get("/v1/namespaces/a/summary")).status == 401


async def test_page_and_files_carry_a_strict_policy(make_http: Any) -> None:
    http = await make_http()
    for path, media_type in [("/ui", "text/html")] + [
        (f"/ui/{name}", kind) for name, (_, kind) in ASSETS.items()
    ]:
        resp = await http.get(path)
        assert resp.status == 200, path
        assert resp.content_type == media_type
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["default-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await (await http.get("/ui")).text()
    # Every script and style is a file of this server: none inline, none elsewhere.
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert "http://" not in page and "https://" not in page


async def test_only_its_own_files(make_http: Any) -> None:
    http = await make_http()
    for path in ("/ui/app.py", "/ui/..%2Fapp.py", "/ui/index.html", "/ui/vendor"):
        resp = await http.get(path)
        assert resp.status == 404, path
    assert (await http.get("/ui/a/b")).status == 404


async def test_not_in_the_api_document(make_http: Any) -> None:
    http = await make_http()
    document = await (await http.get("/openapi.json")).json()
    assert not [p for p in document["paths"] if p.startswith("/ui")]


def test_vendored_chart_library_is_the_released_one() -> None:
    """The files match the checksums recorded when they were copied from the npm package
    (SOURCE beside them); an edit or a partial update fails here."""
    folder = files("memstore.server.inspector").joinpath("static/vendor/uplot-1.6.32")
    lines = folder.joinpath("SOURCE").read_text().splitlines()
    recorded = {
        name: digest for digest, name in (ln.split() for ln in lines if len(ln.split()) == 2)
    }
    assert set(recorded) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in recorded.items():
        assert hashlib.sha256(folder.joinpath(name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in folder.joinpath("LICENSE").read_text()
