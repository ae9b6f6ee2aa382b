"""``MemoryClient``: the HTTP service with the manager's method names and return types.

Swap ``DistributedMemoryManager(...)`` for ``MemoryClient(url, namespace=...)`` and the
agent's code stays the same: same methods, same records, same exceptions
(``NotFoundError``, ``ConflictError``, ``InvalidInputError``, ``BackendUnavailableError``,
...: the service's error ``code`` names the class, ``memstore.core.errors.error_from_wire``).
No answer at all (connection refused, unknown host, timeout) is ``ServiceUnreachableError``,
a ``BackendUnavailableError`` whose message says why.
Arguments are checked here, before any request, by the manager's own checks
(``memstore.core.validation.check_<operation>``), so a mistake gives the same exception,
message and details on both sides; what only the server knows (its payload size and page
size limits) it checks with those same functions.

Lifecycle: ``async with MemoryClient(...) as memory:`` or ``await memory.close()``; a
client never closed is closed anyway when its event loop ends under ``asyncio.run`` (or
``asyncio.Runner``), without warnings. The client keeps one aiohttp session per event loop
(an aiohttp session belongs to the loop it was made on), so one client may be used from
several loops, e.g. a framework's sync methods run on a helper thread's loop; each such
session is closed when its loop ends. A loop driven by hand (``run_until_complete`` and
``close`` without cancelling its tasks) must ``await memory.close()`` itself.

Retries: an answer 429 (rate limited: refused before anything ran) is retried for every
request; 503 (unavailable) only for one that can be resent (GET, unconditional PUT, a
tool use with its own ``usage_id``), since a 503 may come after the write landed (a DELETE
that landed would answer its retry 404: "nothing deleted"). The
wait is the answer's ``Retry-After`` (seconds or an HTTP date), else a doubling backoff;
at most ``retries`` retries and ``retry_max_wait`` seconds of waiting in all, after which
the error is raised (also at once when ``Retry-After`` asks for longer than what is left).

Read-your-writes: the client remembers the entity versions it wrote and read (a
``VersionTracker``, its own or one shared with other clients, e.g. one per replica URL)
and sends them on entity reads (``Memstore-Min-Version``), so no replica answers it from a
cached copy older than what it has seen.

Tracing: every request is an HTTP client span from the *global* OpenTelemetry tracer
provider (the agent's own; a no-op when it has none) and carries that span's context in the
headers of the global propagator (``opentelemetry.propagate``: ``OTEL_PROPAGATORS``, W3C
``traceparent`` by default, B3 with ``b3``/``b3multi``), so the service's server span joins
the agent's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import math
import os
import re
import socket
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import quote

import aiohttp
import orjson
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from yarl import URL

from memstore.client.sse import EventStreamParser
from memstore.client.versions import NO_CACHE, VersionTracker
from memstore.core import analytics
from memstore.core.analytics import (
    AnalyticsOverview,
    FeedbackAnalytics,
    GrowthSeries,
    ToolAnalytics,
)
from memstore.core.batch import check_entity_batch, check_messages_batch
from memstore.core.bounds import TIMESTAMP_SECONDS, check_in
from memstore.core.dump import ImportResult
from memstore.core.errors import (
    BackendUnavailableError,
    ChangesPrunedError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MemoryStoreError,
    RateLimitedError,
    RequestTimeoutError,
    ServiceUnreachableError,
    error_from_wire,
)
from memstore.core.records import (
    ChangeEvent,
    ChangePage,
    ConversationInfo,
    ConversationRevision,
    EntityHit,
    EntityRecord,
    EntityVersion,
    EntityWrite,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageHit,
    MessageRecord,
    MessagesWrite,
    Page,
    SearchPage,
    Snapshot,
    SnapshotRevert,
    ToolUsageHit,
    ToolUsageRecord,
)
from memstore.core.retention import PruneReport, RetentionPolicy, check_prune_at
from memstore.core.search import SearchMode, check_entity_search, check_text_search
from memstore.core.validation import (
    MIN_VERSION_HEADER,
    check_as_of,
    check_before,
    check_change_filter,
    check_change_position,
    check_conversation_id,
    check_entity_key,
    check_entity_write,
    check_feedback,
    check_messages,
    check_min_version,
    check_name,
    check_optional_name,
    check_time_range,
    check_tool_usage,
    check_version,
    check_version_number,
)
from memstore.memory.api import MemoryAPI

#: The fields of a change event (a newer server may send more: they are left out).
_CHANGE_FIELDS = frozenset(f.name for f in dataclasses.fields(ChangeEvent))
#: Errors after which a change stream is opened again (after a wait), not raised.
_RECONNECTABLE = (BackendUnavailableError, RateLimitedError, RequestTimeoutError)


#: How the client runs the search checks: the limit is passed as ``None`` (its bounds are
#: the server's page sizes) and an embedder is assumed (whether the service has one is the
#: server's to say); the server checks both with the same functions.
_SEARCH_CHECK: dict[str, Any] = {"max_limit": 1, "default_limit": 1, "has_embedder": lambda: True}


def _change(body: dict[str, Any]) -> ChangeEvent:
    return ChangeEvent(**{k: v for k, v in body.items() if k in _CHANGE_FIELDS})


def _q(value: str) -> str:
    return quote(value, safe="")


def url_problem(value: str) -> str | None:
    """What is wrong with ``value`` as the service's base URL, or ``None``. The URL is
    shown without its user and password."""
    try:
        url = URL(value)
        url.port  # noqa: B018 - parsed lazily: an out-of-range port raises here
    except ValueError as exc:
        return f"{shown_url(value)!r} is not a valid URL: {exc}"
    if url.scheme in ("http", "https") and url.host:
        return None
    return f"{shown_url(value)!r} is not an http:// or https:// URL with a host"


def shown_url(value: str) -> str:
    """``value`` as it may be shown in messages: without a user or password."""
    return re.sub(r"(?<=//)[^/@]*@", "", value)


def _why_unreachable(exc: BaseException, timeout: float | None) -> str:
    """Why no answer came, in words (aiohttp's own text names internal tuples)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout else "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not accepted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        # Its errno is OpenSSL's, not the system's: strerror would name a wrong cause.
        return f"TLS handshake failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            if exc.os_error.errno == socket.EAI_NONAME:
                return f"host name {exc.host!r} not found"
            return f"host name {exc.host!r} could not be resolved"
        if exc.os_error.errno:
            return os.strerror(exc.os_error.errno).lower()
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed before an answer"
    return str(exc) or type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header as seconds from now (>= 0): a number of seconds or an
    HTTP date. ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


#: Tasks that close a client's session when their event loop ends. asyncio keeps only weak
#: references to tasks; these must live until their loop cancels them.
_LOOP_END_GUARDS: set[asyncio.Task[None]] = set()


@dataclass(eq=False)
class _Sessions:
    """The aiohttp sessions of a client and its ``for_namespace`` views, one per loop, each
    with the task that closes it when its loop ends."""

    timeout: aiohttp.ClientTimeout
    by_loop: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, asyncio.Task[None]]
    ] = field(default_factory=weakref.WeakKeyDictionary)

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        entry = self.by_loop.get(loop)
        if entry is not None:
            return entry[0]
        session = aiohttp.ClientSession(timeout=self.timeout)
        guard = loop.create_task(
            self._close_when_the_loop_ends(loop, session),
            name="memstore-client-close-at-loop-end",
        )
        _LOOP_END_GUARDS.add(guard)
        guard.add_done_callback(_LOOP_END_GUARDS.discard)
        self.by_loop[loop] = (session, guard)
        return session

    async def _close_when_the_loop_ends(
        self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
    ) -> None:
        # asyncio.run cancels the tasks still pending when its main coroutine returns and
        # lets them finish: this one closes the session then, quietly (nothing is lost by a
        # client left open: it holds no data, only connections).
        try:
            await asyncio.Event().wait()
        finally:
            # The entry refers to its loop (session and task do), so it must be dropped
            # here: the weak key alone would never let go of an ended loop.
            entry = self.by_loop.get(loop)
            if entry is not None and entry[0] is session:
                del self.by_loop[loop]
            await session.close()

    async def close(self) -> None:
        """Close the session of the running loop, and have every other running loop close
        its own (cancelling its guard closes it there: a session is closed on its loop)."""
        running = asyncio.get_running_loop()
        for loop, (_, guard) in list(self.by_loop.items()):
            if loop is not running and loop.is_running():
                loop.call_soon_threadsafe(guard.cancel)
        entry = self.by_loop.pop(running, None)
        if entry is not None:
            session, guard = entry
            guard.cancel()
            await session.close()


class MemoryClient(MemoryAPI):
    """Async client for one memory namespace of a memstore service (the seed-compatible
    conveniences come from ``MemoryAPI``, shared with the manager)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        namespace: str = "agent",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        retries: int = 3,
        retry_max_wait: float = 30.0,
        versions: VersionTracker | None = None,
    ) -> None:
        """``tracer_provider``: where the client's spans go (default: the global one).
        ``session``: an aiohttp session to use (the caller closes it; default: the
        client's own, one per event loop). ``retries`` / ``retry_max_wait``: the bound on
        retries of answers 429 and 503 (count, and seconds of waiting in all).
        ``versions``: the entity versions seen, for read-your-writes (default: the
        client's own); clients given the same tracker (e.g. one per replica of one
        service) never read an entity older than any of them has seen."""
        problem = url_problem(base_url)
        if problem is not None:
            raise ConfigurationError(problem)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError("retries must be an integer >= 0")
        if not math.isfinite(retry_max_wait) or retry_max_wait < 0:
            raise ConfigurationError("retry_max_wait must be a number of seconds >= 0")
        self._retries = retries
        self._retry_max_wait = float(retry_max_wait)
        self.base_url = base_url.rstrip("/")
        self.namespace = check_name("namespace", namespace)
        # Never logged or shown; MEMSTORE_TOKEN is read when no token is given.
        self._token = token if token is not None else os.environ.get("MEMSTORE_TOKEN") or None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._sessions = _Sessions(self._timeout)
        self._owns_sessions = True
        url = URL(self.base_url)
        self._server_address = url.host or ""
        self._server_port = url.port
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer("memstore.client", tracer_provider=tracer_provider)
        self.versions = versions if versions is not None else VersionTracker()

    def __repr__(self) -> str:  # never show the token
        return f"MemoryClient({shown_url(self.base_url)!r}, namespace={self.namespace!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close this client's sessions: the running loop's at once, those of other running
        loops (e.g. the adapters' background loop) on their loops. A view from
        ``for_namespace`` leaves the shared sessions to the client it came from; a given
        ``session`` is the caller's to close."""
        if self._owns_sessions:
            await self._sessions.close()

    def for_namespace(self, namespace: str) -> MemoryClient:
        """A client on another namespace sharing this client's connection pools."""
        check_name("namespace", namespace)
        other = MemoryClient(
            self.base_url,
            namespace,
            token=self._token,
            session=self._session,
            tracer_provider=self._tracer_provider,
            retries=self._retries,
            retry_max_wait=self._retry_max_wait,
            versions=self.versions,
        )
        other._timeout = self._timeout
        other._sessions = self._sessions
        other._owns_sessions = False
        return other

    def _get_session(self) -> aiohttp.ClientSession:
        return self._session if self._session is not None else self._sessions.get()

    def _ns(self, path: str) -> str:
        return f"/v1/namespaces/{_q(self.namespace)}{path}"

    def _client_span(self, method: str, url: str) -> Span:
        """The client span of one HTTP exchange (OpenTelemetry's HTTP client conventions)."""
        return self._tracer.start_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": self._server_address,
                "server.port": self._server_port or 0,
                "url.full": url,
            },
        )

    def _unreachable(self, span: Span, exc: BaseException) -> ServiceUnreachableError:
        """The error for an exchange that got no answer, recorded on its span."""
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR))
        return ServiceUnreachableError(
            f"cannot reach memstore at {shown_url(self.base_url)}: "
            f"{_why_unreachable(exc, self._timeout.total)}"
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        accept_404: bool = False,
        idempotent: bool | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """One call: the request, retried on 429 and (``idempotent``; by default from the
        method and conditional headers) on 503 within the client's bounds."""
        if idempotent is None:
            conditional = headers is not None and any(
                h in headers for h in ("If-Match", "If-None-Match")
            )
            # A conditional write that landed before its 503 would fail its retry with 412.
            # A DELETE that landed before its 503 would answer its retry 404 (reported as
            # "nothing deleted"), so only GET and an unconditional PUT are resent.
            idempotent = method == "GET" or (method == "PUT" and not conditional)
        attempt = 0
        waited = 0.0
        while True:
            status, raw, resp_headers = await self._send(
                method,
                path,
                json=json,
                params=params,
                headers=headers,
                attempt=attempt,
                accept_404=accept_404,
            )
            if status == 429 or (status == 503 and idempotent):
                delay = retry_after_seconds(resp_headers.get("Retry-After"))
                if delay is None:
                    delay = min(0.25 * 2**attempt, 5.0)
                if attempt < self._retries and waited + delay <= self._retry_max_wait:
                    await asyncio.sleep(delay)
                    waited += delay
                    attempt += 1
                    continue
            break
        body: Any = None
        if raw and resp_headers.get("Content-Type", "").startswith("application/json"):
            body = orjson.loads(raw)
        elif raw:
            body = raw.decode("utf-8", "replace")
        if status >= 400 and not (accept_404 and status == 404):
            raise error_from_wire(
                status,
                body if isinstance(body, dict) else {},
                retry_after=resp_headers.get("Retry-After"),
            )
        return status, body, resp_headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        attempt: int,
        accept_404: bool,
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP exchange in its own client span: (status, body bytes, headers)."""
        hdrs = dict(headers or {})
        if self._token:
            hdrs["Authorization"] = f"Bearer {self._token}"
        data = None
        if json is not None:
            data = orjson.dumps(json)
            hdrs["Content-Type"] = "application/json"
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        span = self._client_span(method, self.base_url + path)
        if attempt:
            span.set_attribute("http.request.resend_count", attempt)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False):
                propagate.inject(hdrs)
                async with self._get_session().request(
                    method, self.base_url + path, data=data, params=query, headers=hdrs
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
                    resp_headers = dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = self._unreachable(span, exc)
            span.end()
            raise error from exc
        except BaseException:
            span.end()
            raise
        span.set_attribute("http.response.status_code", status)
        if status >= 400 and not (accept_404 and status == 404):
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        return status, raw, resp_headers

    # -- health and admin -------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            status, _, _ = await self._request("GET", "/readyz")
        except MemoryStoreError:
            return False
        return status == 200

    async def list_memory_summaries(self) -> list[MemorySummary]:
        """Admin: summaries of every namespace the token covers (all pages), but those
        that cannot be summarized now (see ``list_memory_summaries_and_skipped``)."""
        return (await self.list_memory_summaries_and_skipped())[0]

    async def list_memory_summaries_and_skipped(
        self,
    ) -> tuple[list[MemorySummary], list[dict[str, Any]]]:
        """Admin: the summaries of every namespace the token covers (all pages), and the
        namespaces skipped because they cannot be summarized now, each
        ``{"namespace", "code", "message"}`` (``namespace_importing``, ``data_shredded``)."""
        out: list[MemorySummary] = []
        skipped: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            _, page, _ = await self._request("GET", "/v1/summary", params={"after": after})
            for item in page["items"]:
                item.pop("total_entities", None)
                item.pop("total_tool_uses", None)
                out.append(MemorySummary(**item))
            skipped.extend(page.get("skipped", []))
            after = page["next_after"]
            if after is None:
                return out, skipped

    async def get_metrics(self) -> dict[str, Any]:
        """The service's metrics (async here: it is a network call)."""
        return (await self._request("GET", "/v1/metrics"))[1]  # type: ignore[no-any-return]

    async def clear_cache(self) -> int:
        return int((await self._request("POST", "/v1/cache/clear"))[1]["cleared"])

    # -- encryption at rest: data keys (admin) ----------------------------------------

    async def list_data_keys(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self._request("GET", "/v1/keys"))[1]["items"]
        return items

    async def rotate_data_keys(self) -> dict[str, Any]:
        out: dict[str, Any] = (await self._request("POST", "/v1/keys/rotate"))[1]
        return out

    async def shred_data_key(self) -> dict[str, Any]:
        out: dict[str, Any] = (await self._request("DELETE", self._ns("/key")))[1]
        return out

    # -- entities ---------------------------------------------------------------------

    async def save_entity(
        self,
        entity_type: str,
        entity_id: str,
        data: JSONObject,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> EntityRecord:
        data_json, ttl, expected_version = check_entity_write(
            entity_type, entity_id, data, ttl, expected_version, None
        )
        headers = {}
        if expected_version == 0:
            headers["If-None-Match"] = "*"
        elif expected_version is not None:
            headers["If-Match"] = f'"{expected_version}"'
        body: dict[str, Any] = {"data": orjson.Fragment(data_json)}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        _, out, _ = await self._request(
            "PUT",
            self._ns(f"/entities/{_q(entity_type)}/{_q(entity_id)}"),
            json=body,
            headers=headers,
        )
        record = EntityRecord(**out)
        self.versions.saw((self.namespace, entity_type, entity_id), record.version)
        return record

    async def save_entities(self, items: Sequence[EntityWrite]) -> list[EntityRecord]:
        checked = check_entity_batch(items, None)
        body_items = []
        for item in checked:
            assert item.data_json is not None  # the check encodes every item
            entry: dict[str, Any] = {
                "type": item.entity_type,
                "id": item.entity_id,
                "data": orjson.Fragment(item.data_json),
            }
            if item.ttl is not None:
                entry["ttl_seconds"] = item.ttl
            if item.expected_version == 0:
                entry["create_only"] = True
            elif item.expected_version is not None:
                entry["expected_version"] = item.expected_version
            body_items.append(entry)
        try:
            _, out, _ = await self._request(
                "POST", self._ns("/entities:batch"), json={"items": body_items}
            )
        except ConflictError as exc:
            # Items written in spite of the conflict (a backend that is not all or
            # nothing): their versions too are floors for this client's reads.
            written = exc.details.get("written") or []
            versions = exc.details.get("versions") or []
            for i, version in zip(written, versions, strict=False):
                if isinstance(i, int) and 0 <= i < len(checked) and isinstance(version, int):
                    key = (self.namespace, checked[i].entity_type, checked[i].entity_id)
                    self.versions.saw(key, version)
            raise
        records = []
        for raw in out["items"]:
            record = EntityRecord(**raw)
            self.versions.saw((self.namespace, record.type, record.id), record.version)
            records.append(record)
        return records

    async def get_entity(
        self,
        entity_type: str,
        entity_id: str,
        *,
        min_version: int | None = None,
        use_cache: bool = True,
    ) -> EntityRecord | None:
        """The entity, or ``None``, never older than what this client (or another sharing
        its ``versions``) has written or read of it: the read carries the version floor
        (``Memstore-Min-Version``), or ``Cache-Control: no-cache`` after this client
        deleted an entity whose version it never saw."""
        check_entity_key(entity_type, entity_id)
        min_version = check_min_version(min_version)
        key = (self.namespace, entity_type, entity_id)
        floor = self.versions.floor(key)
        headers: dict[str, str] = {}
        if not use_cache or floor == NO_CACHE:
            headers["Cache-Control"] = "no-cache"
        elif floor is not None or min_version is not None:
            headers[MIN_VERSION_HEADER] = str(max(floor or 0, min_version or 0))
        status, out, _ = await self._request(
            "GET",
            self._ns(f"/entities/{_q(entity_type)}/{_q(entity_id)}"),
            headers=headers,
            accept_404=True,
        )
        if status == 404:
            self.versions.saw_absent(key)
            return None
        record = EntityRecord(**out)
        self.versions.saw(key, record.version)
        return record

    async def delete_entity(
        self, entity_type: str, entity_id: str, *, expected_version: int | None = None
    ) -> bool:
        check_entity_key(entity_type, entity_id)
        expected_version = check_version(expected_version)
        headers = {} if expected_version is None else {"If-Match": f'"{expected_version}"'}
        status, _, _ = await self._request(
            "DELETE",
            self._ns(f"/entities/{_q(entity_type)}/{_q(entity_id)}"),
            headers=headers,
            accept_404=True,
        )
        key = (self.namespace, entity_type, entity_id)
        if status == 204:
            self.versions.deleted(key)
            return True
        self.versions.saw_absent(key)
        return False

    async def pin_entity(
        self, entity_type: str, entity_id: str, pinned: bool = True
    ) -> EntityRecord | None:
        check_entity_key(entity_type, entity_id)
        if not isinstance(pinned, bool):
            raise InvalidInputError("pinned must be true or false", field="pinned")
        status, out, _ = await self._request(
            "PUT" if pinned else "DELETE",
            self._ns(f"/entities/{_q(entity_type)}/{_q(entity_id)}/pin"),
            accept_404=True,
        )
        return EntityRecord(**out) if status == 200 else None

    async def get_retention_policy(self) -> RetentionPolicy:
        _, out, _ = await self._request("GET", self._ns("/retention/policy"))
        return RetentionPolicy.model_validate(out)

    async def retention_dry_run(
        self, *, at: float | None = None, limit: int | None = None
    ) -> PruneReport:
        if at is not None:
            at = check_prune_at(at)
        _, out, _ = await self._request(
            "GET", self._ns("/retention/dry-run"), params={"at": at, "limit": limit}
        )
        return PruneReport.from_dict(out)

    async def enforce_retention(self, *, limit: int | None = None) -> PruneReport:
        _, out, _ = await self._request(
            "POST", self._ns("/retention:enforce"), params={"limit": limit}
        )
        return PruneReport.from_dict(out)

    # -- version history ----------------------------------------------------------------

    def _entity_path(self, entity_type: str, entity_id: str, tail: str = "") -> str:
        check_entity_key(entity_type, entity_id)
        return self._ns(f"/entities/{_q(entity_type)}/{_q(entity_id)}{tail}")

    async def list_entity_versions(
        self,
        entity_type: str,
        entity_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[EntityVersion]:
        _, out, _ = await self._request(
            "GET",
            self._entity_path(entity_type, entity_id, "/versions"),
            params={"limit": limit, "cursor": cursor},
        )
        return Page([EntityVersion(**v) for v in out["items"]], out["next_cursor"])

    async def get_entity_version(
        self, entity_type: str, entity_id: str, version: int
    ) -> EntityVersion | None:
        path = self._entity_path(entity_type, entity_id)
        number = check_version_number(version)
        status, out, _ = await self._request("GET", f"{path}/versions/{number}", accept_404=True)
        return None if status == 404 else EntityVersion(**out)

    async def get_entity_as_of(
        self,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        path = self._entity_path(entity_type, entity_id)
        version, at = check_as_of(version, at)
        status, out, _ = await self._request(
            "GET",
            path,
            # repr: the shortest text that reads back as the same float
            params={"as_of_version": version, "as_of": None if at is None else repr(at)},
            accept_404=True,
        )
        return None if status == 404 else EntityVersion(**out)

    async def diff_entity_versions(
        self, entity_type: str, entity_id: str, from_version: int, to_version: int
    ) -> list[JSONObject]:
        path = self._entity_path(entity_type, entity_id, "/diff")
        check_version_number(from_version, "from")
        check_version_number(to_version, "to")
        _, out, _ = await self._request(
            "GET", path, params={"from": from_version, "to": to_version}
        )
        patch: list[JSONObject] = out["patch"]
        return patch

    async def revert_entity(
        self,
        entity_type: str,
        entity_id: str,
        version: int,
        *,
        expected_version: int | None = None,
    ) -> EntityRecord:
        path = self._entity_path(entity_type, entity_id, "/revert")
        check_version_number(version)
        expected_version = check_version(expected_version)
        headers = {}
        if expected_version == 0:
            headers["If-None-Match"] = "*"
        elif expected_version is not None:
            headers["If-Match"] = f'"{expected_version}"'
        _, out, _ = await self._request("POST", path, json={"version": version}, headers=headers)
        record = EntityRecord(**out)
        self.versions.saw((self.namespace, entity_type, entity_id), record.version)
        return record

    async def list_conversation_revisions(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ConversationRevision]:
        _, out, _ = await self._request(
            "GET",
            self._conv(conversation_id, tail="/revisions"),
            params={"limit": limit, "cursor": cursor},
        )
        return Page([ConversationRevision(**r) for r in out["items"]], out["next_cursor"])

    async def get_conversation_revision(
        self, revision: int, conversation_id: str | None = None
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        number = check_version_number(revision, "revision")
        status, out, _ = await self._request(
            "GET", self._conv(conversation_id, tail=f"/revisions/{number}"), accept_404=True
        )
        if status == 404:
            return None
        return ConversationRevision(**out["revision"]), [
            MessageRecord(**m) for m in out["messages"]
        ]

    async def restore_conversation_revision(
        self, revision: int, conversation_id: str | None = None
    ) -> list[MessageRecord]:
        number = check_version_number(revision, "revision")
        _, out, _ = await self._request(
            "POST", self._conv(conversation_id, tail=f"/revisions/{number}/restore")
        )
        return [MessageRecord(**m) for m in out["items"]]

    async def create_snapshot(self, name: str) -> Snapshot:
        check_name("snapshot", name)
        _, out, _ = await self._request("POST", self._ns("/snapshots"), json={"name": name})
        return Snapshot(**out)

    async def get_snapshot(self, name: str) -> Snapshot | None:
        check_name("snapshot", name)
        status, out, _ = await self._request(
            "GET", self._ns(f"/snapshots/{_q(name)}"), accept_404=True
        )
        return None if status == 404 else Snapshot(**out)

    async def list_snapshots(self) -> list[Snapshot]:
        _, out, _ = await self._request("GET", self._ns("/snapshots"))
        return [Snapshot(**s) for s in out["items"]]

    async def delete_snapshot(self, name: str) -> bool:
        check_name("snapshot", name)
        status, _, _ = await self._request(
            "DELETE", self._ns(f"/snapshots/{_q(name)}"), accept_404=True
        )
        return status == 204

    async def revert_to_snapshot(self, name: str) -> SnapshotRevert:
        check_name("snapshot", name)
        _, out, _ = await self._request("POST", self._ns(f"/snapshots/{_q(name)}/revert"))
        return SnapshotRevert(**out)

    async def purge_history(self) -> int:
        _, out, _ = await self._request("POST", self._ns("/history:purge"))
        return int(out["removed"])

    async def list_entities(
        self, entity_type: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[EntityRecord]:
        check_name("entity_type", entity_type)
        _, out, _ = await self._request(
            "GET",
            self._ns(f"/entities/{_q(entity_type)}"),
            params={"limit": limit, "cursor": cursor},
        )
        return Page([EntityRecord(**e) for e in out["items"]], out["next_cursor"])

    async def get_entity_types(self) -> list[str]:
        return list((await self._request("GET", self._ns("/entities")))[1]["types"])

    # -- search (recall) --------------------------------------------------------------

    async def _search(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One page of a search: POSTed (the filter is a nested object), resent after a
        503 like any read (a search writes nothing); absent arguments are left out."""
        _, out, _ = await self._request(
            "POST",
            self._ns(path),
            json={k: v for k, v in body.items() if v is not None},
            idempotent=True,
        )
        return out  # type: ignore[no-any-return]

    async def search_entities(
        self,
        query: str | None = None,
        *,
        types: list[str] | None = None,
        filter: JSONObject | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[EntityHit]:
        check_entity_search(query, types, filter, mode, None, **_SEARCH_CHECK)
        out = await self._search(
            "/search",
            {"query": query, "types": types, "filter": filter, "mode": mode,
             "limit": limit, "cursor": cursor},
        )  # fmt: skip
        hits = [EntityHit(EntityRecord(**h["entity"]), h["score"]) for h in out["items"]]
        return SearchPage(hits, out["next_cursor"], out["mode"], out["embedder"])

    async def search_messages(
        self,
        query: str,
        *,
        conversation_id: str | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[MessageHit]:
        check_text_search(query, "conversation_id", conversation_id, mode, None, **_SEARCH_CHECK)
        out = await self._search(
            "/conversations:search",
            {"query": query, "conversation_id": conversation_id, "mode": mode,
             "limit": limit, "cursor": cursor},
        )  # fmt: skip
        hits = [MessageHit(MessageRecord(**h["message"]), h["score"]) for h in out["items"]]
        return SearchPage(hits, out["next_cursor"], out["mode"], out["embedder"])

    async def search_tool_usage(
        self,
        query: str,
        *,
        tool_name: str | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[ToolUsageHit]:
        check_text_search(query, "tool_name", tool_name, mode, None, **_SEARCH_CHECK)
        out = await self._search(
            "/tool-usage/search",
            {"query": query, "tool_name": tool_name, "mode": mode,
             "limit": limit, "cursor": cursor},
        )  # fmt: skip
        hits = [ToolUsageHit(ToolUsageRecord(**h["record"]), h["score"]) for h in out["items"]]
        return SearchPage(hits, out["next_cursor"], out["mode"], out["embedder"])

    # -- conversations ----------------------------------------------------------------

    def _conv(self, conversation_id: str | None, tail: str = "/messages") -> str:
        return self._ns(f"/conversations/{_q(check_conversation_id(conversation_id))}{tail}")

    @staticmethod
    def _messages_body(messages: object, *, allow_empty: bool) -> dict[str, Any]:
        _, raws = check_messages(messages, max_count=None, max_bytes=None, allow_empty=allow_empty)
        return {"messages": [orjson.Fragment(r) for r in raws]}

    async def append_messages(
        self, messages: list[JSONObject], conversation_id: str | None = None
    ) -> list[MessageRecord]:
        path = self._conv(conversation_id)
        body = self._messages_body(messages, allow_empty=False)
        _, out, _ = await self._request("POST", path, json=body)
        return [MessageRecord(**m) for m in out["items"]]

    async def append_messages_batch(
        self, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        checked = check_messages_batch(items, max_count=None, max_bytes=None)
        body = {
            "items": [
                {
                    "conversation_id": item.conversation_id,
                    "messages": [orjson.Fragment(r) for r in item.messages_json or ()],
                }
                for item in checked
            ]
        }
        _, out, _ = await self._request("POST", self._ns("/conversations:batch"), json=body)
        return [[MessageRecord(**m) for m in result["items"]] for result in out["items"]]

    async def load_messages(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        """The last ``limit`` messages (all of them when ``limit`` is None, fetched page
        by page from the newest)."""
        path = self._conv(conversation_id)
        before = check_before(before_seq)
        collected: list[MessageRecord] = []
        while True:
            # The first request sends ``limit`` as given, so the server judges it as the
            # manager would (a bool or a float is an error there, not 1).
            want = limit if limit is None or not collected else limit - len(collected)
            status, out, _ = await self._request(
                "GET", path, params={"limit": want, "before": before}, accept_404=True
            )
            if status == 404:
                # No such conversation: an empty history, as the manager answers.
                return collected
            collected = [MessageRecord(**m) for m in out["items"]] + collected
            before = out["next_before"]
            if before is None or (limit is not None and len(collected) >= limit):
                return collected

    async def save_conversation_history(
        self, messages: list[JSONObject], conversation_id: str | None = None
    ) -> list[MessageRecord]:
        path = self._conv(conversation_id)
        body = self._messages_body(messages, allow_empty=True)
        _, out, _ = await self._request("PUT", path, json=body)
        return [MessageRecord(**m) for m in out["items"]]

    async def pop_message(self, conversation_id: str | None = None) -> MessageRecord | None:
        status, out, _ = await self._request(
            "POST", self._conv(conversation_id, tail="/messages:pop"), accept_404=True
        )
        return None if status == 404 else MessageRecord(**out)

    async def delete_conversation(self, conversation_id: str | None = None) -> bool:
        status, _, _ = await self._request(
            "DELETE", self._conv(conversation_id, tail=""), accept_404=True
        )
        return status == 204

    async def list_conversations(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        _, out, _ = await self._request(
            "GET", self._ns("/conversations"), params={"limit": limit, "cursor": cursor}
        )
        return Page([ConversationInfo(**c) for c in out["items"]], out["next_cursor"])

    # -- tool usage and feedback ------------------------------------------------------

    async def save_tool_usage(
        self,
        tool_name: str,
        args: Any,
        result: Any,
        *,
        duration_ms: float = 0.0,
        success: bool = True,
        conversation_id: str | None = None,
        timestamp: float | None = None,
        usage_id: str | None = None,
    ) -> ToolUsageRecord:
        duration_ms, timestamp, input_json, output_json = check_tool_usage(
            tool_name,
            args,
            result,
            duration_ms=duration_ms,
            conversation_id=conversation_id,
            timestamp=timestamp,
            usage_id=usage_id,
            max_bytes=None,
        )
        body = {
            "tool_name": tool_name,
            "input": orjson.Fragment(input_json),
            "output": orjson.Fragment(output_json),
            "duration_ms": duration_ms,
            "success": bool(success),
            "conversation_id": conversation_id,
            "timestamp": timestamp,
            "id": usage_id,
        }
        _, out, _ = await self._request(
            "POST",
            self._ns("/tool-usage"),
            json={k: v for k, v in body.items() if v is not None or k in ("input", "output")},
            # The same id is stored once: a retry cannot record the use twice.
            idempotent=usage_id is not None,
        )
        return ToolUsageRecord(**out)

    async def query_tool_usage(
        self,
        tool_name: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ToolUsageRecord]:
        check_optional_name("tool_name", tool_name)
        start, end = check_time_range(start, end)
        _, out, _ = await self._request(
            "GET",
            self._ns("/tool-usage"),
            params={
                "tool_name": tool_name,
                "start": start,
                "end": end,
                "limit": limit,
                "cursor": cursor,
            },
        )
        return Page([ToolUsageRecord(**r) for r in out["items"]], out["next_cursor"])

    async def get_tool_names(self) -> list[str]:
        return list((await self._request("GET", self._ns("/tools")))[1]["tools"])

    async def save_learning_feedback(
        self, agent_name: str, feedback_type: str, data: Any
    ) -> FeedbackRecord:
        data_json = check_feedback(agent_name, feedback_type, data, None)
        _, out, _ = await self._request(
            "POST",
            self._ns("/feedback"),
            json={
                "agent_name": agent_name,
                "feedback_type": feedback_type,
                "data": orjson.Fragment(data_json),
            },
        )
        return FeedbackRecord(**out)

    async def query_learning_feedback(
        self,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        check_optional_name("agent_name", agent_name)
        check_optional_name("feedback_type", feedback_type)
        _, out, _ = await self._request(
            "GET",
            self._ns("/feedback"),
            params={
                "agent_name": agent_name,
                "feedback_type": feedback_type,
                "limit": limit,
                "cursor": cursor,
            },
        )
        return Page([FeedbackRecord(**r) for r in out["items"]], out["next_cursor"])

    # -- change log -------------------------------------------------------------------

    #: Seconds without a byte from a change stream (the server sends a keep-alive every
    #: ``MEMSTORE_CHANGES_KEEPALIVE_SECONDS``, 15 by default) after which it counts as
    #: dead and is opened again.
    stream_idle_timeout: float = 60.0

    async def read_changes(self, *, after: int = 0, limit: int | None = None) -> ChangePage:
        after = check_change_position(after)
        _, out, _ = await self._request(
            "GET", self._ns("/changes"), params={"after": after, "limit": limit}
        )
        return ChangePage(
            [_change(e) for e in out["events"]], out["first_position"], out["last_position"]
        )

    async def watch(
        self,
        *,
        after: int = 0,
        kinds: str | Iterable[str] | None = None,
        entity_type: str | None = None,
        conversation_id: str | None = None,
    ) -> AsyncGenerator[ChangeEvent, None]:
        """The change feed as Server-Sent Events. A stream that drops (connection lost,
        the replica stopping, no keep-alive within ``stream_idle_timeout``, an answer
        503 or 429) is opened again with ``Last-Event-ID`` = the last position delivered,
        so nothing is missed or repeated; the waits between attempts double from 0.25 s
        up to 5 s (or follow ``Retry-After``), and after ``retry_max_wait`` seconds of
        failed attempts in a row the last error is raised. ``ChangesPrunedError`` when
        retention removed changes not yet delivered."""
        position = check_change_position(after)
        wanted = check_change_filter(kinds, entity_type, conversation_id)
        params: dict[str, Any] = {"after": position}
        if wanted.kinds is not None:
            params["kind"] = ",".join(sorted(wanted.kinds))
        params["type"] = wanted.entity_type
        params["conversation"] = wanted.conversation_id
        attempt = 0
        waited = 0.0
        connected_once = False
        while True:
            try:
                async for event in self._change_stream(params, position):
                    if event is None:  # connected: a new series of waits
                        attempt, waited, connected_once = 0, 0.0, True
                    elif isinstance(event, int):
                        position = max(position, event)
                    elif event.position > position:  # else delivered already
                        position = event.position
                        yield event
                failure: MemoryStoreError = ServiceUnreachableError(
                    f"the change stream from {shown_url(self.base_url)} ended"
                )
            except ChangesPrunedError:
                raise
            except ServiceUnreachableError as exc:
                if not connected_once:
                    raise  # nothing there (wrong URL, service down): say so at once
                failure = exc
            except _RECONNECTABLE as exc:
                failure = exc
            delay: float | None = None
            if isinstance(failure, RateLimitedError):
                delay = failure.retry_after
            if delay is None:
                delay = min(0.25 * 2**attempt, 5.0)
            if attempt and waited + delay > self._retry_max_wait:
                raise failure
            await asyncio.sleep(delay)
            waited += delay
            attempt += 1

    async def _change_stream(
        self, params: dict[str, Any], position: int
    ) -> AsyncIterator[ChangeEvent | int | None]:
        """One connection of ``watch``: ``None`` once connected, then its events and bare
        ids (positions the server scanned past, filtered out). Raises the server's error
        for an error answer or a final ``pruned``/``error`` event, ``ServiceUnreachableError``
        when it stops otherwise (closed, the replica stopping, cut off)."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if position:
            headers["Last-Event-ID"] = str(position)
        query = {k: str(v) for k, v in params.items() if v is not None}
        url = self.base_url + self._ns("/changes")
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout.total, sock_read=self.stream_idle_timeout
        )
        span = self._client_span("GET", url)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False):
                propagate.inject(headers)
                response = await self._get_session().get(
                    url, params=query, headers=headers, timeout=timeout
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = self._unreachable(span, exc)
            span.end()
            raise error from exc
        except BaseException:
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 400:
            span.set_attribute("error.type", str(response.status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        async with response:
            if response.status != 200 or response.content_type != "text/event-stream":
                raw = await response.read()
                body = orjson.loads(raw) if response.content_type == "application/json" else {}
                raise error_from_wire(
                    response.status if response.status >= 400 else 502,
                    body if isinstance(body, dict) else {},
                    retry_after=response.headers.get("Retry-After"),
                )
            yield None
            parser = EventStreamParser()
            try:
                async for chunk in response.content.iter_any():
                    for sse in parser.feed(chunk):
                        if sse.event in ("pruned", "error"):
                            body = orjson.loads(sse.data)
                            status = 410 if sse.event == "pruned" else 500
                            raise error_from_wire(status, body if isinstance(body, dict) else {})
                        if not sse.data:
                            if sse.last_event_id.isdigit():
                                yield int(sse.last_event_id)
                            continue
                        yield _change(orjson.loads(sse.data))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ServiceUnreachableError(
                    f"the change stream from {shown_url(self.base_url)} broke: "
                    f"{_why_unreachable(exc, self.stream_idle_timeout)}"
                ) from exc
        raise ServiceUnreachableError(f"the change stream from {shown_url(self.base_url)} ended")

    # -- analytics --------------------------------------------------------------------

    async def analytics_overview(self) -> AnalyticsOverview:
        _, out, _ = await self._request("GET", self._ns("/analytics/overview"))
        return analytics.from_dict(AnalyticsOverview, out)

    async def analytics_growth(
        self,
        kind: str,
        *,
        bucket: str = "hour",
        since: float | None = None,
        until: float | None = None,
    ) -> GrowthSeries:
        analytics.check_growth_kind(kind)
        analytics.check_window(bucket, since, until, time.time())
        _, out, _ = await self._request(
            "GET",
            self._ns("/analytics/growth"),
            params={"kind": kind, "bucket": bucket, "since": since, "until": until},
        )
        return analytics.from_dict(GrowthSeries, out)

    async def analytics_tools(
        self,
        *,
        bucket: str = "hour",
        since: float | None = None,
        until: float | None = None,
        tool_name: str | None = None,
        limit: int | None = None,
    ) -> ToolAnalytics:
        check_optional_name("tool_name", tool_name)
        analytics.check_listed_calls(limit)
        analytics.check_window(bucket, since, until, time.time())
        _, out, _ = await self._request(
            "GET",
            self._ns("/analytics/tools"),
            params={
                "bucket": bucket,
                "since": since,
                "until": until,
                "tool_name": tool_name,
                "limit": limit,
            },
        )
        return analytics.from_dict(ToolAnalytics, out)

    async def analytics_feedback(
        self, *, bucket: str = "hour", since: float | None = None, until: float | None = None
    ) -> FeedbackAnalytics:
        analytics.check_window(bucket, since, until, time.time())
        _, out, _ = await self._request(
            "GET",
            self._ns("/analytics/feedback"),
            params={"bucket": bucket, "since": since, "until": until},
        )
        return analytics.from_dict(FeedbackAnalytics, out)

    # -- summary ----------------------------------------------------------------------

    async def get_memory_summary_data(self) -> MemorySummary:
        _, out, _ = await self._request("GET", self._ns("/summary"))
        out.pop("total_entities", None)
        out.pop("total_tool_uses", None)
        return MemorySummary(**out)

    # -- audit ------------------------------------------------------------------------

    async def export_audit(
        self,
        *,
        after: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> AsyncIterator[ChangeEvent]:
        """Admin: the namespace's audit trail (its change log), oldest first, as the
        service streams it: events after position ``after`` (default: from the oldest
        retained one) with a time in ``[since, until)``, up to the newest event when the
        export started. ``ChangesPrunedError`` when retention already removed events right
        after ``after``. Never resent: iterate again from the last position seen."""
        if after is not None:
            check_change_position(after)
        params = {
            "after": after,
            "since": None if since is None else check_in("since", since, TIMESTAMP_SECONDS),
            "until": None if until is None else check_in("until", until, TIMESTAMP_SECONDS),
        }
        async with self._stream("GET", self._ns("/audit"), params) as resp:
            try:
                async for line in resp.content:
                    if not line.strip():
                        continue
                    item = orjson.loads(line)
                    if "error" in item:
                        # The service ended the export early (its last line says why).
                        error = item["error"]
                        raise error_from_wire(500, error if isinstance(error, dict) else {})
                    yield ChangeEvent(**item)
            except aiohttp.ClientPayloadError as exc:
                raise BackendUnavailableError(
                    f"the audit export from {shown_url(self.base_url)} stopped before its "
                    f"end ({exc}); resume after the last position received"
                ) from exc

    # -- export and import (memstore.core.dump) ------------------------------------------

    async def export_namespace(self, *, with_key: bool = False) -> AsyncIterator[bytes]:
        """Admin: the namespace's dump, line by line (each with its ``\\n``), as the
        service streams it. A dump the service could not finish raises (its last line
        says why); a connection lost mid-way raises ``BackendUnavailableError``. Never
        resent: export again. ``with_key``: with encryption at rest, the dump carries its
        data key wrapped by the key-encryption key (it then survives a shred)."""
        params = {"with_key": "true"} if with_key else {}
        async with self._stream("GET", self._ns("/export"), params) as resp:
            try:
                async for line in resp.content:
                    if line.startswith(b'{"error"'):
                        # no record line starts so (sorted keys): the service's last word
                        error = orjson.loads(line)["error"]
                        raise error_from_wire(500, error if isinstance(error, dict) else {})
                    yield line
            except aiohttp.ClientPayloadError as exc:
                raise BackendUnavailableError(
                    f"the export from {shown_url(self.base_url)} stopped before its end ({exc})"
                ) from exc

    async def import_namespace(
        self, chunks: AsyncIterable[bytes], *, replace: bool = False
    ) -> ImportResult:
        """Admin: import a dump (its bytes, cut anywhere, streamed as the request body)
        into this namespace. The service verifies it whole before writing
        (``DumpInvalidError``), refuses a namespace holding data unless ``replace``
        (``NamespaceNotEmptyError``), and hides the namespace until the import is done.
        Never resent: an interrupted import is finished by importing again."""
        params = {"replace": "true" if replace else None}
        async with self._stream(
            "POST", self._ns("/import"), params, data=chunks, read_timeout=None
        ) as resp:
            out = orjson.loads(await resp.read())
        return ImportResult(
            out["namespace"], out["source_namespace"], out["counts"], out["replaced"]
        )

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        *,
        data: AsyncIterable[bytes] | None = None,
        read_timeout: float | Literal["default"] | None = "default",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response read as it arrives, in its own client span: an error answer raises
        its exception here; the timeout bounds each wait for data, not the whole stream
        (``read_timeout=None``: no bound, for an answer that comes only after long work).
        ``data``: a request body streamed from the iterable."""
        hdrs: dict[str, str] = {}
        if self._token:
            hdrs["Authorization"] = f"Bearer {self._token}"
        if data is not None:
            hdrs["Content-Type"] = "application/x-ndjson"
        query = {k: str(v) for k, v in params.items() if v is not None}
        span = self._client_span(method, self.base_url + path)
        sock_read = self._timeout.total if read_timeout == "default" else read_timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_read=sock_read)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False):
                propagate.inject(hdrs)
                try:
                    resp = await self._get_session().request(
                        method,
                        self.base_url + path,
                        params=query,
                        headers=hdrs,
                        timeout=timeout,
                        data=data,
                    )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise self._unreachable(span, exc) from exc
                async with resp:
                    span.set_attribute("http.response.status_code", resp.status)
                    if resp.status >= 400:
                        span.set_attribute("error.type", str(resp.status))
                        span.set_status(Status(StatusCode.ERROR))
                        raw = await resp.read()
                        body = orjson.loads(raw) if resp.content_type == "application/json" else {}
                        raise error_from_wire(
                            resp.status,
                            body if isinstance(body, dict) else {},
                            retry_after=resp.headers.get("Retry-After"),
                        )
                    yield resp
        finally:
            span.end()


if TYPE_CHECKING:
    # mypy: the client implements every MemoryAPI operation (else it is abstract here).
    _client_is_a_memory_api: MemoryAPI = MemoryClient()
