"""The response schemas in /openapi.json are the records of ``memstore.core.records``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from memstore.core import records
from memstore.core.validation import NAME_PATTERNS

RECORDS = [
    records.EntityRecord,
    records.MessageRecord,
    records.ConversationInfo,
    records.ToolUsageRecord,
    records.FeedbackRecord,
    records.MemorySummary,
    records.EntityHit,
    records.MessageHit,
    records.ToolUsageHit,
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
async def test_every_record_is_a_component_with_its_fields(spec: Any, record: type) -> None:
    schema = spec.doc["components"]["schemas"][record.__name__]
    names = [f.name for f in dataclasses.fields(record)]
    if record is records.MemorySummary:
        names += ["total_entities", "total_tool_uses"]
    # What to_dict answers: every field, always present.
    assert list(schema["properties"]) == names
    assert schema["required"] == names
    for name, prop in schema["properties"].items():
        if name in NAME_PATTERNS:
            strings = [b for b in prop.get("anyOf", [prop]) if b.get("type") == "string"]
            assert strings and all(b["pattern"] == NAME_PATTERNS[name].pattern for b in strings)


async def test_no_response_model_redeclares_a_record(spec: Any) -> None:
    """Only records, pages of records and non-record answers are components: a model
    with a record's field set under another name would be a second definition."""
    components = spec.doc["components"]["schemas"]
    requests = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path in spec.doc["paths"].values()
        for op in path.values()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    }
    record_fields = {frozenset(f.name for f in dataclasses.fields(r)) for r in RECORDS}
    for name, schema in components.items():
        if name in {r.__name__ for r in RECORDS} or name in requests:
            continue
        fields = frozenset(schema.get("properties", {}))
        assert not any(f <= fields for f in record_fields), name
