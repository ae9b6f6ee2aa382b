"""``EntityRow``: an entity page answered from the stored JSON is the answer the parsed
records give, field for field."""

from __future__ import annotations

import dataclasses

import orjson

from memstore.core.records import EntityRecord, EntityRow

DATA = {"text": "héllo ✓", "n": [1, 2.5, None, 2**64 - 1], "o": {"$x": {}}}


def test_a_row_answers_with_every_field_of_the_record_and_the_same_json() -> None:
    record = EntityRecord("doc", "d1", DATA, 3, 1_767_225_600.25, 1_767_225_700.5, None, True)
    for stored in (orjson.dumps(DATA), orjson.dumps(DATA).decode()):
        row = EntityRow("doc", "d1", stored, 3, 1_767_225_600.25, 1_767_225_700.5, None, True)
        answer = row.to_dict()
        # same keys in the same order as the record's, so a field added to EntityRecord
        # fails here until the row carries it too
        assert list(answer) == [f.name for f in dataclasses.fields(EntityRecord)]
        assert orjson.dumps(answer) == orjson.dumps(record.to_dict())
        assert row.record() == record
    assert orjson.dumps(EntityRow.of(record).to_dict()) == orjson.dumps(record.to_dict())


def test_the_data_is_sent_as_stored() -> None:
    # Stored JSON text goes out byte for byte (no parse, no re-serialisation).
    stored = b'{"b":1,"a":[1.50,"x"]}'
    body = orjson.dumps(EntityRow("t", "i", stored, 1, 2.0, 2.0, 9.5, False).to_dict())
    assert stored in body
