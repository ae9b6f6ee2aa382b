"""The ``memstore`` CLI as a user runs it: a real process against a real service."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.support.procs import ServiceProcess, free_port


def memstore(
    *args: str, url: str, namespace: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memstore", *args, "--url", url, "--namespace", namespace],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def ns() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_entity_put_get_list_delete(live_service: ServiceProcess, ns: str) -> None:
    put = memstore(
        "entity", "put", "user", "u1", '{"name": "Ada"}', url=live_service.url, namespace=ns
    )
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["version"] == 1

    got = memstore("entity", "get", "user", "u1", url=live_service.url, namespace=ns)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["data"] == {"name": "Ada"}

    listed = memstore("entity", "list", "user", url=live_service.url, namespace=ns)
    assert [e["id"] for e in json.loads(listed.stdout)["items"]] == ["u1"]

    deleted = memstore("entity", "delete", "user", "u1", url=live_service.url, namespace=ns)
    assert deleted.returncode == 0 and "deleted user/u1" in deleted.stdout

    missing = memstore("entity", "get", "user", "u1", url=live_service.url, namespace=ns)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: not_found")
    assert "Traceback" not in missing.stderr


def test_data_from_stdin_and_version_check(live_service: ServiceProcess, ns: str) -> None:
    ok = memstore(
        "entity", "put", "doc", "d", "-", url=live_service.url, namespace=ns, stdin='{"a": 1}'
    )
    assert ok.returncode == 0, ok.stderr
    stale = memstore(
        "entity",
        "put",
        "doc",
        "d",
        '{"a": 2}',
        "--if-version",
        "7",
        url=live_service.url,
        namespace=ns,
    )
    assert stale.returncode == 1
    assert "precondition" in stale.stderr or "conflict" in stale.stderr
    assert "Traceback" not in stale.stderr
    got = memstore("entity", "get", "doc", "d", url=live_service.url, namespace=ns)
    assert json.loads(got.stdout)["data"] == {"a": 1}


def test_conversation_append_show_and_summary(live_service: ServiceProcess, ns: str) -> None:
    messages = '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]'
    app = memstore("conversation", "append", "c1", messages, url=live_service.url, namespace=ns)
    assert app.returncode == 0, app.stderr
    shown = memstore(
        "conversation", "show", "c1", "--last", "1", url=live_service.url, namespace=ns
    )
    assert [m["message"]["content"] for m in json.loads(shown.stdout)] == ["hello"]

    summary = memstore("summary", "--json", url=live_service.url, namespace=ns)
    data = json.loads(summary.stdout)
    assert data["conversations"] == 1 and data["messages"] == 2
    text = memstore("summary", url=live_service.url, namespace=ns)
    assert text.returncode == 0 and ns in text.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("entity", "put", "user", "u1", "{not json"), "DATA is not valid JSON"),
        (("entity", "put", "user", "bad/id", "{}"), "'bad/id' is not a valid entity_id"),
        (("entity", "put", "user", "u1", "[1, 2]"), "invalid_input"),
        (("entity", "put", "user", "u1", "@/nonexistent/file.json"), "cannot read"),
        # JSON has no NaN: it would arrive as null, the entity stored with no TTL.
        (("entity", "put", "user", "u1", "{}", "--ttl", "nan"), "'nan' is not a finite number"),
        (("entity", "put", "user", "u1", "{}", "--ttl", "0"), "is not in the range x>0"),
    ],
)
def test_bad_input_gives_a_message_not_a_traceback(
    live_service: ServiceProcess, ns: str, args: tuple[str, ...], expected: str
) -> None:
    result = memstore(*args, url=live_service.url, namespace=ns)
    assert result.returncode in (1, 2)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    listed = memstore("entity", "list", "user", url=live_service.url, namespace=ns)
    assert json.loads(listed.stdout)["items"] == []


def test_unreachable_service_is_reported_as_such(ns: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    refused = memstore("entity", "get", "user", "u1", url=url, namespace=ns)
    assert refused.returncode == 1
    # One line, saying what happened; not the server's backend_unavailable.
    assert refused.stderr == f"Error: cannot reach memstore at {url}: connection refused\n"

    unknown = memstore("tools", url="http://no-such-host.invalid:8080", namespace=ns)
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "Error: cannot reach memstore at http://no-such-host.invalid:8080: "
        "host name 'no-such-host.invalid' not found\n"
    )
