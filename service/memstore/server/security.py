"""The security middleware: authentication, tenancy, rate limit, quotas, request timeout.

Order for every request (errors are raised as ``memstore.core.errors`` types and turned into
JSON by the one error map, ``memstore.server.errors``):

1. the route's required role (the ``role`` of its row in the route table, ``admin`` for a
   route without one); open routes skip 2-3;
2. authenticate the bearer token (401);
3. the caller's rate limit (429 with ``Retry-After``), refused requests included;
   then the role and the route's namespace (403), before any data is touched; then the
   caller's in-flight cap (429);
4. for writes that can grow a namespace (``grows_storage`` in the row), its quota (403
   ``quota_exceeded``);
5. the handler, body read included, under the request timeout (504 ``timeout``), enforced
   by one shared ``DeadlineWatchdog`` rather than a timer per request; a ``streaming``
   route (``/mcp``) bounds each call it runs itself instead.

The handler runs as its caller (``memstore.core.changes.acting_as``): the token's name
(``None`` with auth off) and the client's address, which the backends write on the change
events of the request's writes. Set here, once, because this is where the principal is
known, and every route passes here (the REST routes and ``/mcp`` alike). With
``MEMSTORE_AUDIT_READS`` every read of a namespace (a GET, or a search: a POST with the
``read`` role) is also logged here (logger ``memstore.audit``): the actor, the operation
and its keys, the status, never a payload.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Middleware

from memstore.core.changes import Actor, acting_as, current_actor
from memstore.core.errors import ConfigurationError, MemoryStoreError, RequestTimeoutError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.server.auth import ANONYMOUS, Authenticator, Principal, build_authenticator
from memstore.server.errors import Handler
from memstore.server.limits import (
    DeadlineWatchdog,
    InflightLimiter,
    QuotaTracker,
    RateLimiter,
    Reservation,
)
from memstore.server.routing import (
    CREATED_ENTITIES,
    Route,
    batch_entity_keys,
    open_path,
    read_raw_body,
    route_row,
)

log = logging.getLogger(__name__)
audit_log = logging.getLogger("memstore.audit")

#: Query parameters that name what a read looks at (the others page or shape the answer).
_AUDITED_QUERY_KEYS = ("tool_name", "agent_name", "feedback_type")

PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    return principal if isinstance(principal, Principal) else ANONYMOUS


class Security:
    """Everything the middleware needs, built once per application."""

    def __init__(self, settings: Settings, manager: DistributedMemoryManager) -> None:
        self.settings = settings
        self.auth: Authenticator = build_authenticator(settings)
        self.limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
        self.inflight = InflightLimiter(settings.max_inflight_per_caller)
        self.manager = manager
        self.quotas = QuotaTracker(
            self._read_usage,
            max_entities=settings.quota_max_entities,
            max_bytes=settings.quota_max_bytes,
            refresh_seconds=settings.quota_refresh_seconds,
        )
        self.timeout = settings.request_timeout_seconds or None
        self.watchdog = DeadlineWatchdog(self.timeout) if self.timeout else None
        # Auth, rate limit and in-flight cap all off (the developer default): no principal
        # to find and no caller key to count, so requests go straight to the timed handler.
        self.open_access = not (
            self.auth.enabled or self.limiter.enabled or self.inflight.limit > 0
        )
        self.audit_reads = settings.audit_reads

    async def _read_usage(self, namespace: str) -> tuple[int, int | None]:
        view = self.manager.for_namespace(namespace)
        summary = await view.get_memory_summary_data()
        # payloads as written: compression and encryption at rest change no one's quota
        written = await view.get_logical_bytes() if self.quotas.max_bytes else None
        return summary.total_entities, written

    async def _admit(
        self, request: web.Request, route: Route, namespace: str
    ) -> Reservation | None:
        body = await read_raw_body(request)  # cached for the handler
        entity_exists = None
        absent_entities = None
        keys: list[tuple[str, str]] = []
        if route.adds_entity and "entity_id" not in request.match_info:
            # a batch: its keys from the body (a body that does not parse is the
            # handler's 400; it counts as no entity here)
            keys = batch_entity_keys(body)
            view = self.manager.for_namespace(namespace)

            async def absent_entities() -> int:
                found = await asyncio.gather(*(view.get_entity(t, i) for t, i in keys))
                return sum(record is None for record in found)

        elif route.adds_entity:
            view = self.manager.for_namespace(namespace)
            mi = request.match_info

            async def entity_exists() -> bool:
                return await view.get_entity(mi["entity_type"], mi["entity_id"]) is not None

        return await self.quotas.reserve(
            namespace,
            incoming_bytes=len(body),
            entity_exists=entity_exists,
            absent_entities=absent_entities,
            entities=len(keys) or 1,
        )

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        if self.open_access:
            # Same outcome as below with ANONYMOUS (every role, every namespace) and no
            # limiter; an unmatched route is answered by aiohttp's 404/405 handler.
            if match_info.http_exception is not None:
                return await handler(request)
            with acting_as(Actor(None, request.remote)):
                return await self._serve(
                    request, handler, route_row(request), match_info.get("namespace")
                )
        route = route_row(request)
        namespace = match_info.get("namespace")
        if match_info.http_exception is not None:
            # No such route (404/405): any valid token may learn that, nothing more; a
            # wrong method on an open path (a probe, /metrics) anyone may learn.
            if not (match_info.http_exception.status == 405 and open_path(request)):
                self.auth.authenticate(request.headers.get("Authorization"))
            return await handler(request)
        # A route without a row in the table needs admin: fail closed.
        role = "admin" if route is None else route.role
        if role is None:
            with acting_as(Actor(None, request.remote)):
                return await self._serve(request, handler, route, namespace)
        principal = self.auth.authenticate(request.headers.get("Authorization"))
        # Refused requests count too: probing other namespaces is not free.
        key = principal.rate_key if self.auth.enabled else f"addr:{request.remote}"
        self.limiter.check(key)
        self.auth.authorize(principal, role, namespace)
        request[PRINCIPAL] = principal
        held = self.inflight.acquire(key)
        actor = Actor(principal.name if self.auth.enabled else None, request.remote)
        try:
            with acting_as(actor):
                return await self._serve(request, handler, route, namespace)
        finally:
            if held:
                self.inflight.release(key)

    def _serve(
        self, request: web.Request, handler: Handler, route: Route | None, namespace: str | None
    ) -> Awaitable[web.StreamResponse]:
        """The rest of the request (a plain function: no coroutine layer per request); a
        read of a namespace goes through the read audit when ``audit_reads`` is on."""
        if self.audit_reads and namespace is not None and _is_read(request, route):
            return self._audited(request, handler, route, namespace)
        return self._timed(request, handler, route, namespace)

    async def _audited(
        self, request: web.Request, handler: Handler, route: Route | None, namespace: str
    ) -> web.StreamResponse:
        status = 500
        try:
            response = await self._timed(request, handler, route, namespace)
            status = response.status
            return response
        except MemoryStoreError as exc:
            status = exc.http_status
            raise
        finally:
            keys = {k: v for k, v in request.match_info.items() if k != "namespace"}
            keys.update((k, request.query[k]) for k in _AUDITED_QUERY_KEYS if k in request.query)
            operation = None if route is None else route.operation_id
            log_read(current_actor(), namespace, operation, keys, status)

    async def _timed(
        self, request: web.Request, handler: Handler, route: Route | None, namespace: str | None
    ) -> web.StreamResponse:
        watchdog = self.watchdog
        if watchdog is None or (route is not None and route.streaming):
            return await self._call(request, handler, route, namespace)
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - aiohttp always runs handlers in a task
            return await self._call(request, handler, route, namespace)
        entry = watchdog.watch(task)
        try:
            return await self._call(request, handler, route, namespace)
        except asyncio.CancelledError:
            if not watchdog.expired(entry):
                raise
            log.warning(
                "request timed out",
                extra={
                    "route": None if route is None else route.operation_id,
                    "timeout_seconds": self.timeout,
                },
            )
            raise RequestTimeoutError(
                f"the request took longer than {math.ceil(watchdog.timeout)}s; "
                "a write may or may not have been applied"
            ) from None
        finally:
            watchdog.done(entry)

    async def _call(
        self, request: web.Request, handler: Handler, route: Route | None, namespace: str | None
    ) -> web.StreamResponse:
        if not self.quotas.enabled or namespace is None or route is None:
            return await handler(request)
        reservation = await self._admit(request, route, namespace) if route.grows_storage else None
        try:
            response = await handler(request)
        except BaseException:
            self.quotas.settle(reservation, succeeded=False)
            raise
        ok = response.status < 400
        created = request.get(CREATED_ENTITIES)
        self.quotas.settle(
            reservation,
            succeeded=ok,
            created=ok and route.adds_entity and response.status == 201
            if created is None
            else created,
        )
        if ok and route.shrinks_storage:
            self.quotas.forget(namespace)
        return response


def _is_read(request: web.Request, route: Route | None) -> bool:
    """A GET, or a route that reads with a body (search: POST, role ``read``)."""
    return request.method == "GET" or (route is not None and route.role == "read")


def log_read(
    actor: Actor | None,
    namespace: str,
    operation: str | None,
    keys: dict[str, str],
    status: int,
) -> None:
    """One line of the read audit (``MEMSTORE_AUDIT_READS``): who read what. ``keys`` are
    names (types, ids, filters), never payloads."""
    audit_log.info(
        "read",
        extra={
            "actor": None if actor is None else actor.name,
            "address": None if actor is None else actor.address,
            "namespace": namespace,
            "operation": operation,
            "keys": keys,
            "status": status,
        },
    )


def security_middleware(security: Security) -> Middleware:
    if not security.auth.enabled:
        log.warning(
            "authentication is disabled (MEMSTORE_AUTH_ENABLED=false): every caller can read "
            "and write every namespace"
        )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await security.handle(request, handler)

    return middleware


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(settings: Settings) -> None:
    """Refuse to serve without auth on a non-loopback address unless explicitly allowed."""
    if settings.auth_enabled or is_loopback(settings.host):
        return
    if not settings.allow_insecure_bind:
        # The container image listens on 0.0.0.0 by default, so this is the first thing a
        # `docker run` without settings shows: it names every way to start.
        raise ConfigurationError(
            f"refusing to listen on {settings.host} with authentication disabled. Either "
            "turn authentication on: MEMSTORE_AUTH_ENABLED=true and "
            "MEMSTORE_AUTH_TOKENS_FILE=<path of a tokens file> (its sha256 hashes come from "
            "`memstore hash-token`); or, if something in front authenticates, "
            "MEMSTORE_ALLOW_INSECURE_BIND=true (`memstore serve --allow-insecure-bind`)"
        )
    log.warning(
        "listening on a non-loopback address with authentication disabled "
        "(MEMSTORE_ALLOW_INSECURE_BIND=true)",
        extra={"host": settings.host},
    )
