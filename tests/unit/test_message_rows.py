"""``MessageRow``: a message page answered from the stored JSON is the answer the parsed
records give, field for field."""

from __future__ import annotations

import dataclasses

import orjson

from memstore.core.records import MessageRecord, MessageRow

MESSAGE = {"role": "user", "content": "héllo ✓", "n": [1, 2.5, None], "o": {"$x": {}}}


def test_a_row_answers_with_every_field_of_the_record_and_the_same_json() -> None:
    for stored in (orjson.dumps(MESSAGE), orjson.dumps(MESSAGE).decode()):
        row = MessageRow(7, 1_767_225_600.25, stored)
        record = MessageRecord("c1", 7, MESSAGE, 1_767_225_600.25)
        answer = row.to_dict("c1")
        # same keys in the same order as the record's, so a field added to MessageRecord
        # fails here until the row carries it too
        assert list(answer) == [f.name for f in dataclasses.fields(MessageRecord)]
        assert orjson.dumps(answer) == orjson.dumps(record.to_dict())


def test_the_message_is_sent_as_stored() -> None:
    # Stored JSON text goes out byte for byte (no parse, no re-serialisation).
    stored = b'{"b":1,"a":[1.50,"x"]}'
    body = orjson.dumps(MessageRow(1, 2.0, stored).to_dict("c"))
    assert stored in body
