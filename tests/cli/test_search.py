"""``memstore search``: each command run as a user does, against a real service."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.cli.run import ok, run
from tests.support.procs import ServiceProcess


@pytest.fixture
def target(live_service: ServiceProcess) -> tuple[str, ...]:
    return ("--url", live_service.url, "-n", f"cli-search-{uuid.uuid4().hex[:8]}")


def j(*args: str) -> Any:
    return json.loads(ok(*args))


def test_search_entities(target: tuple[str, ...]) -> None:
    ok(
        *target,
        "entity",
        "put",
        "note",
        "n1",
        '{"text": "Paris in spring, Paris again", "stars": 5}',
    )
    ok(*target, "entity", "put", "note", "n2", '{"text": "milk and eggs", "stars": 2}')
    ok(*target, "entity", "put", "task", "t1", '{"text": "book a hotel in Paris", "stars": 3}')

    words = j(*target, "search", "entities", "paris", "--mode", "keyword")
    assert [h["entity"]["id"] for h in words["items"]] == ["n1", "t1"]
    assert words["mode"] == "keyword" and words["next_cursor"] is None
    notes = j(*target, "search", "entities", "paris", "--type", "note", "--mode", "keyword")
    assert [h["entity"]["id"] for h in notes["items"]] == ["n1"]

    # No query: the filter alone (auto resolves to filter); --filter from stdin works too.
    filtered = j(*target, "search", "entities", "--filter", '{"stars": {"$gte": 3}}')
    assert filtered["mode"] == "filter"
    assert sorted(h["entity"]["id"] for h in filtered["items"]) == ["n1", "t1"]
    first = j(*target, "search", "entities", "--filter", '{"stars": {"$gt": 0}}', "--limit", "2")
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = j(*target, "search", "entities", "--filter", '{"stars": {"$gt": 0}}', "--limit", "2",
             "--cursor", first["next_cursor"])  # fmt: skip
    ids = [h["entity"]["id"] for h in first["items"] + rest["items"]]
    assert sorted(ids) == ["n1", "n2", "t1"] and rest["next_cursor"] is None


def test_search_messages_and_tool_usage(target: tuple[str, ...]) -> None:
    ok(*target, "conversation", "append", "c1", '{"role": "user", "content": "pancakes recipe"}')
    ok(*target, "conversation", "append", "c2", '{"role": "user", "content": "weather today"}')
    hits = j(*target, "search", "messages", "pancakes", "--mode", "keyword")
    assert [(h["message"]["conversation_id"], h["message"]["seq"]) for h in hits["items"]] == [
        ("c1", 1)
    ]
    none = j(*target, "search", "messages", "pancakes", "--conversation", "c2", "--mode", "keyword")
    assert none["items"] == []

    ok(*target, "tool", "record", "web_search", "--input", '{"q": "weather in Oslo"}')
    ok(*target, "tool", "record", "calculator", "--input", '{"expr": "2+2"}', "--output", "4")
    uses = j(*target, "search", "tool-usage", "oslo", "--mode", "keyword")
    assert [h["record"]["tool_name"] for h in uses["items"]] == ["web_search"]
    other = j(*target, "search", "tool-usage", "oslo", "--tool", "calculator", "--mode", "keyword")
    assert other["items"] == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("entities", "--filter", '{"stars": {"$foo": 1}}'), "filter.stars.$foo"),
        (("entities", "--filter", "{not json"), "--filter is not valid JSON"),
        (("entities", ""), "query"),
        (("entities", "x", "--limit", "100000000"), "limit"),
        (("messages", "x", "--mode", "fuzzy"), "'fuzzy' is not one of"),
        (("messages", "x", "--conversation", "bad id"), "conversation_id"),
        (("tool-usage", "   "), "query"),
    ],
)
def test_bad_searches_are_one_line_without_a_traceback(
    target: tuple[str, ...], args: tuple[str, ...], says: str
) -> None:
    result = run(*target, "search", *args)
    assert result.returncode in (1, 2), result
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
