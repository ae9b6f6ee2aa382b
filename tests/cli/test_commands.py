"""Every data route of the HTTP API has a ``memstore`` command: each one run as a user
does, against a real service, and its effect read back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli.run import ok, run
from tests.support.procs import ServiceProcess


@pytest.fixture
def target(live_service: ServiceProcess) -> tuple[str, ...]:
    import uuid

    return ("--url", live_service.url, "-n", f"cli-{uuid.uuid4().hex[:8]}")


def j(*args: str) -> Any:
    return json.loads(ok(*args))


def test_entity_types_and_conditional_delete(target: tuple[str, ...]) -> None:
    assert j(*target, "entity", "types") == []
    ok(*target, "entity", "put", "user", "u1", "{}")
    ok(*target, "entity", "put", "doc", "d1", "{}", "--if-version", "0")
    assert j(*target, "entity", "types") == ["doc", "user"]
    stale = run(*target, "entity", "delete", "user", "u1", "--if-version", "5")
    assert stale.returncode == 1 and stale.stderr.startswith("Error: version_conflict")
    assert j(*target, "entity", "get", "user", "u1")["version"] == 1
    assert ok(*target, "entity", "delete", "user", "u1", "--if-version", "1") == (
        "deleted user/u1\n"
    )
    assert j(*target, "entity", "types") == ["doc"]


def test_conversation_list_replace_delete(target: tuple[str, ...]) -> None:
    ok(*target, "conversation", "append", "c1", '{"role": "user", "content": "a"}')
    ok(*target, "conversation", "append", "c2", '[{"n": 1}, {"n": 2}]')
    page = j(*target, "conversation", "list", "--limit", "1")
    assert [c["conversation_id"] for c in page["items"]] == ["c1"]
    rest = j(*target, "conversation", "list", "--cursor", page["next_cursor"])
    assert [c["conversation_id"] for c in rest["items"]] == ["c2"]
    assert rest["next_cursor"] is None

    replaced = j(*target, "conversation", "replace", "c2", '[{"n": 3}]')
    assert [m["message"] for m in replaced] == [{"n": 3}]
    assert [m["message"] for m in j(*target, "conversation", "show", "c2")] == [{"n": 3}]

    assert ok(*target, "conversation", "delete", "c1") == "deleted conversation c1\n"
    assert [c["conversation_id"] for c in j(*target, "conversation", "list")["items"]] == ["c2"]
    again = run(*target, "conversation", "delete", "c1")
    assert again.returncode == 1
    assert again.stderr == "Error: not_found: conversation c1 does not exist\n"


def test_conversation_pop(target: tuple[str, ...]) -> None:
    ok(*target, "conversation", "append", "c", '[{"n": 1}, {"n": 2}]')
    popped = j(*target, "conversation", "pop", "c")
    assert (popped["seq"], popped["message"]) == (2, {"n": 2})
    assert [m["message"] for m in j(*target, "conversation", "show", "c")] == [{"n": 1}]
    assert j(*target, "conversation", "pop", "c")["message"] == {"n": 1}
    empty = run(*target, "conversation", "pop", "c")
    assert empty.returncode == 1
    assert empty.stderr == "Error: not_found: conversation c has no messages\n"
    bad = run(*target, "conversation", "pop", "bad id")
    assert bad.returncode == 2 and "conversation_id" in bad.stderr and "Traceback" not in bad.stderr


def test_tool_record_list_and_names(target: tuple[str, ...]) -> None:
    first = j(*target, "tool", "record", "search", "--input", '{"q": "x"}', "--output", "[1]",
              "--duration-ms", "12.5", "--timestamp", "1000", "--id", "use-1")  # fmt: skip
    assert first["tool_name"] == "search" and first["success"] is True
    assert (first["input"], first["output"], first["duration_ms"]) == ({"q": "x"}, [1], 12.5)
    # The same id again is the same use (idempotent retry).
    again = j(*target, "tool", "record", "search", "--input", '{"q": "x"}', "--output", "[1]",
              "--duration-ms", "12.5", "--timestamp", "1000", "--id", "use-1")  # fmt: skip
    assert again["id"] == first["id"] == "use-1"
    ok(*target, "entity", "put", "user", "u1", "{}")
    failed = j(*target, "tool", "record", "calc", "--failed", "--timestamp", "2000",
               "--conversation", "c1")  # fmt: skip
    assert failed["success"] is False and failed["conversation_id"] == "c1"

    assert j(*target, "tools") == ["calc", "search"]
    every = j(*target, "tool", "list")
    assert [u["tool_name"] for u in every["items"]] == ["search", "calc"]
    only = j(*target, "tool", "list", "--tool", "calc")
    assert [u["tool_name"] for u in only["items"]] == ["calc"]
    window = j(*target, "tool", "list", "--start", "1500", "--end", "2500")
    assert [u["timestamp"] for u in window["items"]] == [2000]
    bad = run(*target, "tool", "record", "search", "--input", "{nope")
    assert bad.returncode == 2 and "--input is not valid JSON" in bad.stderr


def test_feedback_add_and_list(target: tuple[str, ...]) -> None:
    rec = j(*target, "feedback", "add", "planner", "rating", '{"score": 4}')
    assert (rec["agent_name"], rec["feedback_type"], rec["data"]) == (
        "planner",
        "rating",
        {"score": 4},
    )
    ok(*target, "feedback", "add", "coder", "note")
    assert len(j(*target, "feedback", "list")["items"]) == 2
    mine = j(*target, "feedback", "list", "--agent", "planner")
    assert [f["data"] for f in mine["items"]] == [{"score": 4}]
    typed = j(*target, "feedback", "list", "--type", "note")
    assert [f["agent_name"] for f in typed["items"]] == ["coder"]


def test_summary_of_every_namespace(target: tuple[str, ...]) -> None:
    ok(*target, "entity", "put", "user", "u1", "{}")
    namespace = target[-1]
    every = j(*target, "summary", "--all")
    mine = [s for s in every if s["namespace"] == namespace]
    assert len(mine) == 1 and mine[0]["entity_counts"] == {"user": 1}
