"""The client's event-stream parser against the rules of the WHATWG standard
("Interpreting an event stream"), and the change filter."""

from __future__ import annotations

import pytest

from memstore.client.sse import EventStreamParser, ServerSentEvent
from memstore.core import changes
from memstore.core.errors import InvalidInputError
from memstore.core.records import ChangeEvent
from memstore.core.validation import check_change_filter


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = EventStreamParser()
    out: list[ServerSentEvent] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_fields_comments_and_the_blank_line_that_ends_an_event() -> None:
    stream = b': hello\nid: 7\nevent: entity.saved\ndata: {"a":\ndata: 1}\n\n'
    assert parse(stream) == [ServerSentEvent("entity.saved", '{"a":\n1}', "7")]


def test_line_endings_of_every_kind_even_split_between_chunks() -> None:
    events = parse(b"data: a\r", b"\ndata: b\r\r", b"data: c\r\n\r\n", b"data: d\n\n")
    assert [e.data for e in events] == ["a\nb", "c", "d"]


def test_a_multibyte_character_split_between_chunks() -> None:
    text = 'data: {"n":"Ada \u00e9\u4e2d"}\n\n'.encode()
    assert parse(text[:14], text[14:]) == parse(text)
    assert parse(text)[0].data == '{"n":"Ada \u00e9\u4e2d"}'


def test_an_event_is_dispatched_only_at_its_blank_line() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"id: 1\ndata: x\n") == []
    assert parser.feed(b"\n") == [ServerSentEvent("message", "x", "1")]


def test_the_last_event_id_stays_until_changed_and_a_bare_id_is_told() -> None:
    events = parse(b"id: 3\ndata: a\n\ndata: b\n\nid: 9\n\n: ping\n\n")
    assert [(e.data, e.last_event_id) for e in events] == [("a", "3"), ("b", "3"), ("", "9")]


def test_what_the_standard_ignores() -> None:
    stream = b"\xef\xbb\xbfdata:no space\nretry: 10\nfoo: bar\nid: x\x00y\ndata\n\n"
    assert parse(stream) == [ServerSentEvent("message", "no space\n", "")]


def event(kind: str, **fields: object) -> ChangeEvent:
    return ChangeEvent(position=1, kind=kind, timestamp=0.0, **fields)  # type: ignore[arg-type]


def test_the_change_filter() -> None:
    wanted = check_change_filter([changes.ENTITY_SAVED, changes.TOOL_USAGE_RECORDED], None, "c1")
    assert wanted.matches(event(changes.TOOL_USAGE_RECORDED, conversation_id="c1"))
    assert not wanted.matches(event(changes.TOOL_USAGE_RECORDED))
    assert not wanted.matches(event(changes.FEEDBACK_SAVED, conversation_id="c1"))
    one = check_change_filter(changes.ENTITY_DELETED, "user", None)
    assert one.kinds == frozenset({changes.ENTITY_DELETED})
    assert one.matches(event(changes.ENTITY_DELETED, entity_type="user"))
    assert not one.matches(event(changes.ENTITY_DELETED, entity_type="doc"))
    assert check_change_filter(None, None, None).everything


@pytest.mark.parametrize("kinds", [[], ["entity.saved", 3], "entity", {"entity.saved": 1}, 5])
def test_a_bad_kind_names_the_field(kinds: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_change_filter(kinds, None, None, kinds_field="kind")
    assert info.value.details == {"field": "kind"}
    assert "entity.saved" in info.value.message  # the kinds there are, in words
