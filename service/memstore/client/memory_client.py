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

Tracing: every request is an HTTP client span from the *global* OpenTelemetry tracer
provider (the agent's own; a no-op when it has none) and carries that span's context in the
headers of the global propagator (``opentelemetry.propagate``: ``OTEL_PROPAGATORS``, W3C
``traceparent`` by default, B3 with ``b3``/``b3multi``), so the service's server span joins
the agent's trace.
"""

from __future__ import annotations

import os
import re
import socket
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import aiohttp
import orjson
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from memstore.core.errors import (
    ConfigurationError,
    MemoryStoreError,
    ServiceUnreachableError,
    error_from_wire,
)
from memstore.core.records import (
    ConversationInfo,
    EntityRecord,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageRecord,
    Page,
    ToolUsageRecord,
)
from memstore.core.validation import (
    check_before,
    check_conversation_id,
    check_entity_key,
    check_entity_write,
    check_feedback,
    check_messages,
    check_name,
    check_optional_name,
    check_time_range,
    check_tool_usage,
    check_version,
)
from memstore.memory.api import MemoryAPI


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
    ) -> None:
        """``tracer_provider``: where the client's spans go (default: the global one)."""
        problem = url_problem(base_url)
        if problem is not None:
            raise ConfigurationError(problem)
        self.base_url = base_url.rstrip("/")
        self.namespace = check_name("namespace", namespace)
        # Never logged or shown; MEMSTORE_TOKEN is read when no token is given.
        self._token = token if token is not None else os.environ.get("MEMSTORE_TOKEN") or None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        url = URL(self.base_url)
        self._server_address = url.host or ""
        self._server_port = url.port
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer("memstore.client", tracer_provider=tracer_provider)

    def __repr__(self) -> str:  # never show the token
        return f"MemoryClient({shown_url(self.base_url)!r}, namespace={self.namespace!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def for_namespace(self, namespace: str) -> MemoryClient:
        """A client on another namespace sharing this client's connection pool."""
        check_name("namespace", namespace)
        other = MemoryClient(
            self.base_url,
            namespace,
            token=self._token,
            session=self._get_session(),
            tracer_provider=self._tracer_provider,
        )
        other._owns_session = False
        return other

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _ns(self, path: str) -> str:
        return f"/v1/namespaces/{_q(self.namespace)}{path}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        accept_404: bool = False,
    ) -> tuple[int, Any, dict[str, str]]:
        hdrs = dict(headers or {})
        if self._token:
            hdrs["Authorization"] = f"Bearer {self._token}"
        data = None
        if json is not None:
            data = orjson.dumps(json)
            hdrs["Content-Type"] = "application/json"
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        span = self._tracer.start_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": self._server_address,
                "server.port": self._server_port or 0,
                "url.full": self.base_url + path,
            },
        )
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
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise ServiceUnreachableError(
                f"cannot reach memstore at {shown_url(self.base_url)}: "
                f"{_why_unreachable(exc, self._timeout.total)}"
            ) from exc
        except BaseException:
            span.end()
            raise
        span.set_attribute("http.response.status_code", status)
        if status >= 400 and not (accept_404 and status == 404):
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()
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

    # -- health and admin -------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            status, _, _ = await self._request("GET", "/readyz")
        except MemoryStoreError:
            return False
        return status == 200

    async def list_memory_summaries(self) -> list[MemorySummary]:
        """Admin: summaries of every namespace the token covers (all pages)."""
        out: list[MemorySummary] = []
        after: str | None = None
        while True:
            _, page, _ = await self._request("GET", "/v1/summary", params={"after": after})
            for item in page["items"]:
                item.pop("total_entities", None)
                item.pop("total_tool_uses", None)
                out.append(MemorySummary(**item))
            after = page["next_after"]
            if after is None:
                return out

    async def get_metrics(self) -> dict[str, Any]:
        """The service's metrics (async here: it is a network call)."""
        return (await self._request("GET", "/v1/metrics"))[1]  # type: ignore[no-any-return]

    async def clear_cache(self) -> int:
        return int((await self._request("POST", "/v1/cache/clear"))[1]["cleared"])

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
        return EntityRecord(**out)

    async def get_entity(self, entity_type: str, entity_id: str) -> EntityRecord | None:
        check_entity_key(entity_type, entity_id)
        status, out, _ = await self._request(
            "GET", self._ns(f"/entities/{_q(entity_type)}/{_q(entity_id)}"), accept_404=True
        )
        return None if status == 404 else EntityRecord(**out)

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
        return status == 204

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

    # -- summary ----------------------------------------------------------------------

    async def get_memory_summary_data(self) -> MemorySummary:
        _, out, _ = await self._request("GET", self._ns("/summary"))
        out.pop("total_entities", None)
        out.pop("total_tool_uses", None)
        return MemorySummary(**out)


if TYPE_CHECKING:
    # mypy: the client implements every MemoryAPI operation (else it is abstract here).
    _client_is_a_memory_api: MemoryAPI = MemoryClient()
