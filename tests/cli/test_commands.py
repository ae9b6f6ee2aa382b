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


def test_watch_prints_changes_as_json_lines(target: tuple[str, ...]) -> None:
    ok(*target, "entity", "put", "user", "u1", "{}")
    ok(*target, "conversation", "append", "c1", "{}")
    ok(*target, "feedback", "add", "bot", "rating", "5")
    lines = ok(*target, "watch", "--count", "3").splitlines()
    changes = [json.loads(line) for line in lines]
    assert [(c["position"], c["kind"]) for c in changes] == [
        (1, "entity.saved"),
        (2, "conversation.appended"),
        (3, "feedback.saved"),
    ]
    assert "address" not in changes[0]
    only = ok(
        *target, "watch", "--kind", "feedback.saved", "--kind", "entity.saved", "--count", "2"
    )
    assert [json.loads(line)["position"] for line in only.splitlines()] == [1, 3]
    resumed = ok(*target, "watch", "--after", "1", "--count", "1", "--conversation", "c1")
    assert json.loads(resumed)["conversation_id"] == "c1"
    typed = ok(*target, "watch", "--type", "user", "--count", "1")
    assert json.loads(typed)["entity_id"] == "u1"


def test_watch_refuses_a_bad_kind_before_asking(target: tuple[str, ...]) -> None:
    bad = run(*target, "watch", "--kind", "entity.renamed")
    assert bad.returncode == 2
    assert "'entity.renamed' is not one of" in bad.stderr
    negative = run(*target, "watch", "--after", "-1")
    assert negative.returncode == 2 and "Traceback" not in negative.stderr


def test_watch_follows_until_ctrl_c(target: tuple[str, ...]) -> None:
    import signal
    import subprocess
    import time

    from tests.cli.run import MEMSTORE

    proc = subprocess.Popen(
        [MEMSTORE, *target, "watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ok(*target, "entity", "put", "user", "live", "{}")
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed as it happens, not at exit
        assert json.loads(line)["entity_id"] == "live"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == "" and out == ""


def test_watch_without_a_service_says_so() -> None:
    result = run("--url", "http://127.0.0.1:9", "watch")
    assert result.returncode == 1
    assert (
        result.stderr == "Error: cannot reach memstore at http://127.0.0.1:9: connection refused\n"
    )
