"""Reading a ``text/event-stream`` body: the parsing rules of the WHATWG HTML standard,
"Server-sent events", section "Interpreting an event stream".

Written here rather than taken from a package: the maintained SSE clients are built on
other HTTP libraries (httpx-sse), and the aiohttp ones (aiohttp-sse-client and its fork
aiohttp-sse-client2, last released 2021 and 2023) own the connection, its retries and
its errors, where ``MemoryClient.watch`` needs its own (the JSON error bodies, 410
``changes_pruned``, ``Last-Event-ID`` from the position it has delivered, tracing). The
format itself is small: lines, four fields, a blank line ends an event.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event. ``data`` is empty for a block that only set an ``id`` (the
    standard fires no event for it, but the last event id changes: a reader that resumes
    must know it)."""

    event: str
    data: str
    last_event_id: str


class EventStreamParser:
    """Feed it the body's bytes as they come; it returns the events completed so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # the start of a line not ended yet
        self._after_cr = False  # the last chunk ended with CR: a leading LF belongs to it
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""
        self._id_changed = False
        self._first = True

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):  # one leading BOM is ignored
                text = text[1:]
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        out: list[ServerSentEvent] = []
        lines = (self._pending + text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = lines.pop()
        for line in lines:
            event = self._line(line)
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._last_id = value
            self._id_changed = True
        # "retry" (the reconnection delay) is not used: the client keeps its own backoff,
        # and other fields are ignored, as the standard says.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, id_changed = self._data, self._event, self._id_changed
        self._data, self._event, self._id_changed = [], "", False
        if not data and not id_changed:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self._last_id)
