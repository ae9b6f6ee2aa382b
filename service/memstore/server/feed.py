"""``GET /v1/namespaces/{namespace}/changes``: the namespace's change feed, in two forms.

* ``Accept: text/event-stream``: Server-Sent Events (WHATWG HTML, "Server-sent events").
  Each change is one event, ``id: <position>``, ``event: <kind>``, ``data: <event
  JSON>``. A quiet stream gets a comment line every
  ``MEMSTORE_CHANGES_KEEPALIVE_SECONDS`` (proxies close idle connections; the client
  notices a dead one), carrying ``id: <last position scanned>`` when filtered-out events
  moved it, so a reconnect resumes past them. Resume with ``Last-Event-ID`` (what an
  ``EventSource`` sends by itself) or ``?after=``. Problems found before the stream starts
  are ordinary JSON errors (a resume point already pruned: 410 ``changes_pruned``); once
  it runs, a problem ends it with one last event, ``pruned`` (the reader fell behind
  retention) or ``error`` (a 503 code: reconnect later), whose data is the error's JSON
  body. A graceful stop of the service ends every stream cleanly (the client reconnects,
  to another replica behind a Service).
* otherwise JSON, one page: ``{"events", "next_after", "first_position",
  "last_position"}``; ``next_after`` is the last position scanned (filtered-out events
  move it too), to pass back as ``after``. ``wait`` makes it a long-poll: with nothing new
  the answer waits up to that many seconds for a change.

Both forms read through a ``ChangeReader`` (``memory/feed.py``), so they see the log in
the same order on every replica. The route row is ``streaming``: no whole-request
deadline (a stream is long); each read of the log has the request timeout instead. A
stream holds its caller's in-flight slot (``MEMSTORE_MAX_INFLIGHT_PER_CALLER``) for its
life: the cap also bounds the streams a caller keeps open on a replica. Events on the feed
omit ``address`` (the client address is for the admin audit export); ``actor`` stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re

import orjson
from aiohttp import web

from memstore.core.errors import (
    BackendUnavailableError,
    ChangesPrunedError,
    InvalidInputError,
    MemoryStoreError,
)
from memstore.core.records import ChangeEvent
from memstore.core.validation import (
    NAME_PATTERNS,
    check_change_position,
    limit_error,
    name_problem,
)
from memstore.memory.feed import ChangeReader
from memstore.server.state import MANAGER, SETTINGS

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
#: What an ``after`` / ``Last-Event-ID`` looks like: a position (``check_change_position``).
_POSITION_RE = re.compile(r"[0-9]{1,18}")
#: How often an open stream checks that its client is still there (aiohttp does not
#: cancel a handler whose client left): a stream given up by its client ends, and gives
#: back its in-flight slot, within this, not at its next keep-alive.
DISCONNECT_POLL_SECONDS = 1.0
_LIMIT_RE = re.compile(r"-?[0-9]{1,18}")


class FeedStreams:
    """The feed requests in progress, so a graceful stop can end them: streams end
    cleanly, long-polls answer with what they have."""

    def __init__(self) -> None:
        self.readers: set[ChangeReader] = set()
        self.closing = False

    def close(self) -> None:
        self.closing = True
        for reader in list(self.readers):
            reader.close()


FEED_STREAMS = web.AppKey("feed_streams", FeedStreams)


def add_feed(app: web.Application) -> None:
    """What the feed needs in the app: its registry, emptied on shutdown before aiohttp
    waits for the open requests (a stream would otherwise hold the stop until the
    shutdown timeout)."""
    app[FEED_STREAMS] = FeedStreams()

    async def end_streams(app: web.Application) -> None:
        app[FEED_STREAMS].close()

    app.on_shutdown.append(end_streams)


def _position(value: str, name: str) -> int:
    if not _POSITION_RE.fullmatch(value):
        raise InvalidInputError(f"{name} must be a change position, an integer >= 0", field=name)
    return check_change_position(int(value))


def _resume_point(request: web.Request) -> int:
    """``Last-Event-ID`` (an ``EventSource`` reconnecting sends it, and its URL still
    has the first ``after``) wins over ``?after=``; neither: 0, from the start. Both are
    checked when given."""
    after = request.query.get("after")
    position = 0 if after is None else _position(after, "after")
    last_id = request.headers.get("Last-Event-ID")
    return position if last_id is None else _position(last_id.strip(), "Last-Event-ID")


def _name(request: web.Request, param: str, kind: str) -> str | None:
    value = request.query.get(param)
    if value is not None and not NAME_PATTERNS[kind].fullmatch(value):
        raise InvalidInputError(f"{param}: {name_problem(kind, value)}", field=param)
    return value


def _kinds(request: web.Request) -> list[str] | None:
    values = request.query.getall("kind", [])
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",")]


def _wait(request: web.Request) -> float:
    raw = request.query.get("wait")
    limit = request.app[SETTINGS].changes_max_wait_seconds
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= limit):
        raise InvalidInputError(
            f"wait must be a number of seconds from 0 to {limit:g}", field="wait"
        )
    return value


def _limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return None
    if not _LIMIT_RE.fullmatch(raw):
        raise limit_error(request.app[SETTINGS].max_page_size)
    return int(raw)


def wants_event_stream(request: web.Request) -> bool:
    return any(
        part.split(";", 1)[0].strip().lower() == EVENT_STREAM
        for value in request.headers.getall("Accept", ())
        for part in value.split(",")
    )


async def get_changes(request: web.Request) -> web.StreamResponse:
    """The view of the changes route (see the module doc)."""
    stream = wants_event_stream(request)
    after = _resume_point(request)
    kinds = _kinds(request)
    entity_type = _name(request, "type", "entity_type")
    conversation_id = _name(request, "conversation", "conversation_id")
    wait = _wait(request)  # checked in both forms; a stream does not wait for its first read
    limit = _limit(request)  # a stream's reads are pages of this size too
    feeds = request.app[FEED_STREAMS]
    if feeds.closing:
        raise BackendUnavailableError("the service is stopping; reconnect")
    settings = request.app[SETTINGS]
    manager = request.app[MANAGER].for_checked_namespace(request.match_info["namespace"])
    reader = manager.change_reader(
        after=after,
        kinds=kinds,
        entity_type=entity_type,
        conversation_id=conversation_id,
        page_size=limit,
        kinds_field="kind",
        read_timeout=settings.request_timeout_seconds or None,
    )
    feeds.readers.add(reader)
    try:
        # The first read happens before anything is sent: a pruned resume point or an
        # unavailable backend is an ordinary JSON error answer.
        events = await reader.next_events(within=0.0 if stream else wait)
        if not stream:
            return web.Response(
                body=orjson.dumps(
                    {
                        "events": [e.to_shared_dict() for e in events],
                        "next_after": reader.position,
                        "first_position": reader.first_position,
                        "last_position": reader.last_position,
                    }
                ),
                content_type="application/json",
            )
        return await _stream(request, reader, events, after, settings.changes_keepalive_seconds)
    finally:
        reader.close()
        feeds.readers.discard(reader)


def _frame(event: ChangeEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.position,
        event.kind.encode(),
        orjson.dumps(event.to_shared_dict()),
    )


def _last_frame(name: str, exc: MemoryStoreError) -> bytes:
    body: dict[str, object] = {"code": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(body))


async def _stream(
    request: web.Request,
    reader: ChangeReader,
    events: list[ChangeEvent],
    after: int,
    keepalive: float,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": EVENT_STREAM,
            "Cache-Control": "no-cache",
            # nginx and others would buffer the stream otherwise.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    sent = after  # the last position the client was told of (an event's or a bare id)
    watching = asyncio.create_task(_close_when_gone(request, reader))
    try:
        while True:
            if events:
                await response.write(b"".join(_frame(e) for e in events))
                sent = events[-1].position
            elif not reader.closed:
                ping = b": keep-alive\n"
                if reader.position > sent:
                    ping += b"id: %d\n" % reader.position
                    sent = reader.position
                await response.write(ping + b"\n")
            transport = request.transport
            if reader.closed or transport is None or transport.is_closing():
                break
            try:
                events = await reader.next_events(within=keepalive)
            except ChangesPrunedError as exc:
                await response.write(_last_frame("pruned", exc))
                break
            except MemoryStoreError as exc:
                log.warning("change stream ended: %s", exc.code)
                await response.write(_last_frame("error", exc))
                break
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    except ConnectionError:
        pass  # the client went away: nothing to tell it
    finally:
        watching.cancel()
    return response


async def _close_when_gone(request: web.Request, reader: ChangeReader) -> None:
    while not reader.closed:
        transport = request.transport
        if transport is None or transport.is_closing():
            reader.close()
            return
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
