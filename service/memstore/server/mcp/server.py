"""The MCP server: the SDK's low-level ``Server`` with memstore's tools and resources, and
the same policy as the HTTP API.

* Who calls: ``principal_of(ctx)`` (over HTTP the principal the security middleware
  authenticated from the bearer token; over stdio the local user, who owns the store).
* Which namespace: the call's ``namespace`` argument (or the resource URI's); else the
  default namespace when the token may use it; else the token's namespace when it has
  exactly one (else the call must name one).
* Whether it may: ``Authenticator.authorize(principal, role, namespace)``, the check of
  the REST routes, with the tool's role (``read`` or ``write``); a listen stream needs
  ``read`` in the namespace of every URI it asks for.
* Errors: a tool's mistakes (bad arguments, version conflicts, a namespace the token may
  not use) are tool results with ``isError`` and the error's ``code``/``message``/
  ``details`` (what the REST API answers), so a model can read them and correct itself;
  an unknown tool or resource URI is a JSON-RPC error (``INVALID_PARAMS``), as the
  protocol says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
import orjson
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    EmptyResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    TextContent,
    Tool,
    ToolAnnotations,
    UnsubscribeRequestParams,
)

from memstore.core.changes import current_actor
from memstore.core.errors import InvalidInputError, MemoryStoreError, RequestTimeoutError
from memstore.core.keys import conversation_change_key, entity_cache_key
from memstore.core.validation import check_name
from memstore.memory.api import MemoryAPI
from memstore.server.auth import Authenticator, Principal, Role
from memstore.server.limits import QuotaTracker, Reservation
from memstore.server.mcp.resources import (
    TEMPLATES,
    ChangeFeed,
    conversation_uri,
    entity_uri,
    parse_uri,
    read_resource,
    summary_uri,
)
from memstore.server.mcp.tools import TOOLS, ToolSpec, parse_args
from memstore.server.security import log_read

log = logging.getLogger(__name__)

#: The arguments of a read tool that name what it reads (audited when reads are).
_AUDITED_ARGS = ("entity_type", "entity_id", "conversation_id", "tool_name")

Ctx = ServerRequestContext[Any, Any]
PrincipalOf = Callable[[Ctx], Principal]

INSTRUCTIONS = (
    "memstore is a memory shared by agents: entities (JSON objects by type and id, "
    "versioned), conversations (append-only message logs) and tool-usage records. "
    "Recall before you remember; pass the recalled version as expected_version so that "
    "you never overwrite another agent's newer write."
)


def _version() -> str:
    try:
        return version("memstore")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


def resolve_namespace(principal: Principal, requested: str | None, default: str) -> str:
    """The namespace a call works in (see the module doc)."""
    if requested is not None:
        return check_name("namespace", requested)
    scope = principal.namespaces
    if scope is None or default in scope:
        return default
    if len(scope) == 1:
        (only,) = scope
        return only
    # Say what to do rather than refuse the default namespace: the caller's own names.
    raise InvalidInputError(
        f"name the namespace: this token may use {', '.join(sorted(scope))}", field="namespace"
    )


def error_result(exc: MemoryStoreError) -> CallToolResult:
    body = exc.to_dict()
    return CallToolResult(
        content=[TextContent(text=f"{exc.code}: {exc.message}")],
        structured_content={"error": body},
        is_error=True,
    )


def protocol_error(exc: MemoryStoreError) -> MCPError:
    """An error outside a tool call (a resource read) as a JSON-RPC error."""
    code = INVALID_PARAMS if exc.http_status < 500 else INTERNAL_ERROR
    return MCPError(code, f"{exc.code}: {exc.message}", data=exc.to_dict())


class MemoryMcp:
    """The tools and resources over one ``MemoryAPI`` (any namespace of it)."""

    def __init__(
        self,
        memory: MemoryAPI,
        *,
        principal_of: PrincipalOf,
        feed: ChangeFeed,
        call_timeout: float | None = None,
        announce_writes: bool = False,
        quotas: QuotaTracker | None = None,
        session_subscriptions: bool = False,
        audit_reads: bool = False,
    ) -> None:
        """``announce_writes``: tell ``feed`` of the tools' own writes (when ``memory``
        has no change hook of its own, e.g. a ``MemoryClient``). ``quotas``: the
        namespace quotas writes are admitted against (the service's).
        ``session_subscriptions``: serve the handshake era's ``resources/subscribe`` too,
        for a transport with one lasting connection (stdio); stateless HTTP has no
        channel to send its notifications on. ``audit_reads``: log every read tool call
        and resource read (``MEMSTORE_AUDIT_READS``, as the REST routes' reads)."""
        self.memory = memory
        self.default_namespace = memory.namespace
        self.principal_of = principal_of
        self.feed = feed
        self.call_timeout = call_timeout
        self.audit_reads = audit_reads
        self.announce_writes = announce_writes
        self.quotas = quotas if quotas is not None and quotas.enabled else None
        self.listen = ListenHandler(feed)
        self.session_subscriptions = session_subscriptions
        # resources/subscribe (handshake era, one connection): URI -> the session to tell.
        self._subscribed: dict[str, ServerSession] = {}
        self._stop_delivery: Callable[[], None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.tools = [
            Tool(
                name=spec.name,
                description=spec.description,
                input_schema=spec.input_schema(),
                annotations=ToolAnnotations(
                    read_only_hint=spec.role == "read",
                    destructive_hint=spec.name == "forget",
                    idempotent_hint=spec.role == "read" or spec.name in ("remember", "forget"),
                ),
            )
            for spec in TOOLS.values()
        ]

    def server(self) -> Server[Any]:
        server: Server[Any] = Server(
            "memstore",
            version=_version(),
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_subscriptions_listen=self.subscriptions_listen,
        )
        if self.session_subscriptions:
            server.add_request_handler(
                "resources/subscribe", SubscribeRequestParams, self.subscribe_resource
            )
            server.add_request_handler(
                "resources/unsubscribe", UnsubscribeRequestParams, self.unsubscribe_resource
            )
        return server

    def _view(self, ctx: Ctx, requested: str | None, role: Role) -> MemoryAPI:
        principal = self.principal_of(ctx)
        namespace = resolve_namespace(principal, requested, self.default_namespace)
        Authenticator.authorize(principal, role, namespace)
        return self.memory.for_namespace(namespace)

    # -- tools ----------------------------------------------------------------------------

    async def list_tools(self, ctx: Ctx, params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=self.tools)

    async def call_tool(self, ctx: Ctx, params: CallToolRequestParams) -> CallToolResult:
        spec = TOOLS.get(params.name)
        if spec is None:
            raise MCPError(
                INVALID_PARAMS, f"unknown tool {params.name!r}; the tools are {', '.join(TOOLS)}"
            )
        try:
            result = await self._call(ctx, spec, params.arguments)
        except MemoryStoreError as exc:
            return error_result(exc)
        return CallToolResult(
            content=[TextContent(text=orjson.dumps(result).decode())],
            structured_content=result,
        )

    async def _call(
        self, ctx: Ctx, spec: ToolSpec[Any], arguments: dict[str, Any] | None
    ) -> dict[str, Any]:
        args = parse_args(spec.args, arguments)
        view = self._view(ctx, args.namespace, spec.role)
        if not (self.audit_reads and spec.role == "read"):
            return await self._run_call(view, spec, args, arguments)
        keys = {k: v for k in _AUDITED_ARGS if (v := getattr(args, k, None)) is not None}
        status = 500
        try:
            result = await self._run_call(view, spec, args, arguments)
            status = 200
            return result
        except MemoryStoreError as exc:
            status = exc.http_status
            raise
        finally:
            log_read(current_actor(), view.namespace, f"mcp:{spec.name}", keys, status)

    async def _run_call(
        self, view: MemoryAPI, spec: ToolSpec[Any], args: Any, arguments: dict[str, Any] | None
    ) -> dict[str, Any]:
        reservation = await self._admit(view, spec, args, arguments)
        result: dict[str, Any] | None = None
        try:
            with self._time_limit("the call", "; a write may or may not have been applied"):
                result = await spec.call(view, args)
        finally:
            if spec.changes is not None and self.announce_writes:
                self._announce(view.namespace, spec.changes, args)
            if self.quotas is not None:
                done = result is not None
                created = done and bool(result and result.get("created"))
                self.quotas.settle(reservation, succeeded=done, created=created)
                if done and spec.shrinks_storage:
                    self.quotas.forget(view.namespace)
        return result

    @contextlib.contextmanager
    def _time_limit(self, what: str, note: str = "") -> Iterator[None]:
        """``call_timeout`` on one call (the whole ``/mcp`` request has no deadline: a
        listen stream is long), as ``RequestTimeoutError``."""
        try:
            with anyio.fail_after(self.call_timeout):
                yield
        except TimeoutError:
            raise RequestTimeoutError(
                f"{what} took longer than {self.call_timeout}s{note}"
            ) from None

    async def _admit(
        self, view: MemoryAPI, spec: ToolSpec[Any], args: Any, arguments: dict[str, Any] | None
    ) -> Reservation | None:
        """The namespace's quotas, as the REST routes apply them (``QuotaExceededError``)."""
        if self.quotas is None or not spec.grows_storage:
            return None
        entity_exists = None
        if spec.adds_entity:

            async def entity_exists() -> bool:
                return await view.get_entity(args.entity_type, args.entity_id) is not None

        return await self.quotas.reserve(
            view.namespace,
            incoming_bytes=len(orjson.dumps(arguments or {})),
            entity_exists=entity_exists,
        )

    def _announce(self, namespace: str, kind: str, args: Any) -> None:
        if kind == "entity":
            self.feed.changed(entity_cache_key(namespace, args.entity_type, args.entity_id))
        else:
            self.feed.changed(conversation_change_key(namespace, args.conversation_id))

    # -- resources ------------------------------------------------------------------------

    async def list_resources(
        self, ctx: Ctx, params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        """The default namespace's summary, then its conversations and entities, one page
        of conversations per call (the cursor is the conversations' cursor)."""
        cursor = params.cursor if params is not None else None
        try:
            view = self._view(ctx, None, "read")
        except MemoryStoreError as exc:
            raise protocol_error(exc) from None
        status = 500
        try:
            with self._time_limit("listing the resources"):
                result = await self._list_resources(view, cursor)
            status = 200
            return result
        except MemoryStoreError as exc:
            status = exc.http_status
            raise protocol_error(exc) from None
        finally:
            if self.audit_reads:
                log_read(current_actor(), view.namespace, "mcp:resources/list", {}, status)

    async def _list_resources(self, view: MemoryAPI, cursor: str | None) -> ListResourcesResult:
        namespace = view.namespace
        resources: list[Resource] = []
        if cursor is None:
            resources.append(Resource(name=f"{namespace} summary", uri=summary_uri(namespace)))
            for entity_type in await view.get_entity_types():
                page = await view.list_entities(entity_type)
                resources += [
                    Resource(
                        name=f"{entity_type}/{e.id}",
                        uri=entity_uri(namespace, entity_type, e.id),
                        mime_type="application/json",
                    )
                    for e in page.items
                ]
        conversations = await view.list_conversations(cursor=cursor)
        resources += [
            Resource(
                name=f"conversation {c.conversation_id}",
                uri=conversation_uri(namespace, c.conversation_id),
                mime_type="application/json",
            )
            for c in conversations.items
        ]
        return ListResourcesResult(resources=resources, next_cursor=conversations.next_cursor)

    async def list_resource_templates(
        self, ctx: Ctx, params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(resource_templates=TEMPLATES)

    async def read_resource(
        self, ctx: Ctx, params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        try:
            ref = parse_uri(params.uri)
            view = self._view(ctx, ref.namespace, "read")
        except MemoryStoreError as exc:
            raise protocol_error(exc) from None
        status = 500
        try:
            with self._time_limit("reading the resource"):
                result = await read_resource(view, params.uri, ref)
            status = 200
            return result
        except MemoryStoreError as exc:
            status = exc.http_status
            raise protocol_error(exc) from None
        finally:
            if self.audit_reads:
                keys = {"uri": params.uri}
                log_read(current_actor(), view.namespace, "mcp:resources/read", keys, status)

    async def subscriptions_listen(
        self, ctx: Ctx, params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """The SDK's listen stream, once the caller may read every URI it names (a change
        notice tells something about a namespace too)."""
        try:
            for uri in params.notifications.resource_subscriptions or ():
                self._view(ctx, parse_uri(uri).namespace, "read")
            if params.notifications.resources_list_changed:
                self._view(ctx, None, "read")
        except MemoryStoreError as exc:
            raise protocol_error(exc) from None
        return await self.listen(ctx, params)

    # -- resources/subscribe (handshake era, stdio) ----------------------------------------

    async def subscribe_resource(self, ctx: Ctx, params: SubscribeRequestParams) -> EmptyResult:
        try:
            self._view(ctx, parse_uri(params.uri).namespace, "read")
        except MemoryStoreError as exc:
            raise protocol_error(exc) from None
        self._subscribed[params.uri] = ctx.session
        if self._stop_delivery is None:
            self._stop_delivery = self.feed.subscribe(self._tell_sessions)
        return EmptyResult()

    async def unsubscribe_resource(self, ctx: Ctx, params: UnsubscribeRequestParams) -> EmptyResult:
        self._subscribed.pop(params.uri, None)
        return EmptyResult()

    def _tell_sessions(self, event: ServerEvent) -> None:
        if not isinstance(event, ResourceUpdated):
            return
        session = self._subscribed.get(event.uri)
        if session is not None:
            # The feed's listeners are synchronous: the notification is sent by a task.
            task = asyncio.get_running_loop().create_task(self._send_updated(session, event.uri))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_updated(self, session: ServerSession, uri: str) -> None:
        try:
            await session.send_resource_updated(uri)
        except Exception:
            # The client went away; its subscription goes with it.
            log.info("could not send a resource update; dropping the subscription")
            self._subscribed.pop(uri, None)
