"""``/mcp``: the MCP SDK's Streamable HTTP transport served inside the aiohttp app.

The SDK's transport is an ASGI application (``StreamableHTTPSessionManager``); ``mcp_view``
hands it each request as ASGI messages and streams its answer back through an aiohttp
``StreamResponse``. So ``/mcp`` is on the service's port, behind the same middlewares as
the REST routes (bearer token, rate limit, in-flight cap, metrics, traces), with its policy
in its route rows like every other route (docs/architecture.md, "MCP").

The transport runs stateless: no ``Mcp-Session-Id``, nothing kept between requests, so any
replica answers any request. A 2026-07-28 client's ``subscriptions/listen`` stream stays on
the replica that took it; writes through other replicas reach it through the backend's
invalidation bus (``ChangeFeed`` fed by the manager's change hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from aiohttp import web
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from memstore.core.bounds import ENVELOPE_BYTES
from memstore.core.errors import ConfigurationError, MemoryStoreError, PermissionDeniedError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.server.auth import Principal
from memstore.server.limits import QuotaTracker
from memstore.server.mcp.resources import ChangeFeed
from memstore.server.mcp.server import Ctx, MemoryMcp
from memstore.server.routing import Route, TableRoute, read_raw_body
from memstore.server.security import is_loopback, principal_of

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
MCP_TRANSPORT = web.AppKey("mcp_transport", StreamableHTTPSessionManager)
#: Where the bridge puts the authenticated caller in the ASGI scope, for the tools.
PRINCIPAL_KEY = "memstore.principal"
#: Loopback names, always allowed (any port): local clients and tests.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
#: How often an open stream checks that its client is still connected.
DISCONNECT_POLL_SECONDS = 1.0


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin checks (DNS-rebinding protection) from the settings: with allowed
    hosts configured, those and the loopback names; without, the SDK's own default (on,
    loopback names only, when the service listens on loopback; off otherwise: a pod is
    reached by names it cannot know, and off loopback the service starts only with
    bearer tokens, which a rebinding page does not have, unless
    ``MEMSTORE_ALLOW_INSECURE_BIND`` says otherwise). The SDK checks Host and Origin
    together or not at all, so allowed origins without a Host check are refused rather
    than silently ignored."""
    hosts = list(settings.mcp_allowed_hosts)
    if "*" in hosts or not (hosts or is_loopback(settings.host)):
        if settings.mcp_allowed_origins:
            raise ConfigurationError(
                "MEMSTORE_MCP_ALLOWED_ORIGINS is checked only together with the Host check, "
                "which is off here: also set MEMSTORE_MCP_ALLOWED_HOSTS to the names "
                "clients use (not '*')"
            )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts += [h for name in LOOPBACK_HOSTS for h in (name, f"{name}:*")]
    origins = list(settings.mcp_allowed_origins)
    origins += [f"{scheme}://{name}:*" for scheme in ("http", "https") for name in LOOPBACK_HOSTS]
    origins += [f"{scheme}://{name}" for scheme in ("http", "https") for name in LOOPBACK_HOSTS]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def principal_from_scope(ctx: Ctx) -> Principal:
    """The caller ``mcp_view`` put in the request's scope; none is refused (fail closed)."""
    scope = getattr(ctx.request, "scope", None)
    principal = scope.get(PRINCIPAL_KEY) if isinstance(scope, dict) else None
    if not isinstance(principal, Principal):
        raise PermissionDeniedError("no authenticated caller for this MCP request")
    return principal


async def _client_gone(request: web.Request) -> None:
    """Return once the client's connection is closed (aiohttp does not cancel handlers)."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)


async def mcp_view(request: web.Request) -> web.StreamResponse:
    """One HTTP request to the SDK's transport, as ASGI, answered as it streams."""
    transport = request.app[MCP_TRANSPORT]
    # Read here: bounded by client_max_size (413) and the accepted codings (415).
    body = await read_raw_body(request)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.encode(),
        "query_string": request.query_string.encode(),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": (request.remote or "", 0),
        "server": None,
        "state": {},
        PRINCIPAL_KEY: principal_of(request),
    }
    body_sent = False
    response: web.StreamResponse | None = None

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await _client_gone(request)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers", ()):
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            await response.prepare(request)
        elif message["type"] == "http.response.body" and response is not None:
            chunk = message.get("body", b"")
            if chunk:
                await response.write(chunk)
            if not message.get("more_body", False):
                await response.write_eof()

    await transport.handle_request(scope, receive, send)
    if response is None:
        raise MemoryStoreError("the MCP transport gave no answer")
    return response


#: ``/mcp`` in the route table's terms. Not in ``routes.ROUTES``: a JSON-RPC endpoint, not
#: a REST operation, so not in /openapi.json either. ``read`` lets a token in (listing
#: tools, reading resources); each tool call then needs its own role in its namespace.
#: POST only: stateless, there is no standalone GET stream to open and no session to
#: DELETE, and the protocol says such a server answers both with 405 (aiohttp's, with
#: ``Allow: POST``).
MCP_ROUTES = (
    Route(
        "POST",
        MCP_PATH,
        mcp_view,
        "mcp",
        "MCP Streamable HTTP endpoint (JSON-RPC 2.0; stateless).",
        "mcp",
        role="read",
        streaming=True,
    ),
)


def add_mcp(
    app: web.Application,
    settings: Settings,
    manager: DistributedMemoryManager,
    quotas: QuotaTracker,
) -> None:
    """Serve ``/mcp`` in ``app`` over ``manager``; writes count against ``quotas`` (the
    REST routes' tracker)."""
    feed = ChangeFeed()
    memory_mcp = MemoryMcp(
        manager,
        principal_of=principal_from_scope,
        feed=feed,
        call_timeout=settings.request_timeout_seconds or None,
        quotas=quotas,
        audit_reads=settings.audit_reads,
    )
    transport = StreamableHTTPSessionManager(
        memory_mcp.server(),
        stateless=True,
        security_settings=transport_security(settings),
        max_request_body_size=settings.max_body_bytes + ENVELOPE_BYTES,
    )
    app[MCP_TRANSPORT] = transport
    resource = app.router.add_resource(MCP_PATH, name="mcp")
    for row in MCP_ROUTES:
        resource.register_route(TableRoute(row, row.handler, resource))

    async def run_transport(app: web.Application) -> AsyncIterator[None]:
        # The transport's task group is entered and left by one task of its own (anyio
        # requires it; aiohttp may run start-up and clean-up in different tasks).
        started = asyncio.Event()
        stop = asyncio.Event()

        async def hold() -> None:
            async with transport.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(hold(), name="memstore-mcp-transport")
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait((task, waiting), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiting.cancel()
            task.result()  # it failed to start: say why
        remove_listener = manager.add_change_listener(feed.changed)
        try:
            yield
        finally:
            remove_listener()
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def end_streams(app: web.Application) -> None:
        # Listen streams end gracefully before the server waits for open requests.
        memory_mcp.listen.close()

    app.cleanup_ctx.append(run_transport)
    app.on_shutdown.append(end_streams)
