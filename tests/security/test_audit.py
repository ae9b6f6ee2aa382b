"""The audit trail, end to end: a real ``memstore serve`` with auth on and two writers
("alice", "bob") on distinct client addresses; the export (client, CLI and raw HTTP) lists
every write with its actor and address, in order, and holds none of the payloads."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from memstore.client import MemoryClient
from memstore.core import changes
from memstore.core.errors import PermissionDeniedError
from memstore.core.records import ChangeEvent
from tests.cli.run import run
from tests.mcp.conftest import connect
from tests.security.conftest import write_tokens_file
from tests.support.procs import ServiceProcess, running_service

NS = "shared"
ALICE_ADDRESS = "127.0.0.2"
BOB_ADDRESS = "127.0.0.3"
#: Every payload written carries this, with a counter; none may reach the export.
MARKER = "PAYLOAD-MARKER-9c1e"


@dataclass(frozen=True)
class AuditTokens:
    alice: str  # read, write and admin on NS
    bob: str  # read and write on NS
    carol: str  # read on NS


@pytest.fixture(scope="module")
def audit_tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditTokens, Path]:
    tokens = AuditTokens(*(secrets.token_urlsafe(24) for _ in range(3)))
    path = write_tokens_file(
        tmp_path_factory.mktemp("audit-tokens") / "tokens.json",
        [
            ("alice", tokens.alice, [NS], ["read", "write", "admin"]),
            ("bob", tokens.bob, [NS], ["read", "write"]),
            ("carol", tokens.carol, [NS], ["read"]),
        ],
    )
    return tokens, path


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, audit_tokens: tuple[AuditTokens, Path]
) -> Iterator[ServiceProcess]:
    env = {
        "MEMSTORE_AUTH_ENABLED": "true",
        "MEMSTORE_AUTH_TOKENS_FILE": str(audit_tokens[1]),
        "MEMSTORE_AUDIT_READS": "true",
    }
    with running_service(tmp_path_factory.mktemp("audit-service"), env) as svc:
        yield svc


def client_from(svc: ServiceProcess, address: str, token: str) -> MemoryClient:
    """A client whose connections leave from ``address`` (any 127.x is loopback)."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
    return MemoryClient(svc.url, NS, token=token, session=session)


Expected = tuple[str, str | None, str, str]  # kind, the key it names, actor, address


def key_of(event: ChangeEvent) -> str | None:
    return event.record_id or event.entity_id or event.conversation_id


async def scripted_session(svc: ServiceProcess, tokens: AuditTokens) -> list[Expected]:
    """Both writers, interleaved: every kind of write a client makes, plus a few that
    change nothing (no event). Returns the events the log must hold, in order."""
    alice = client_from(svc, ALICE_ADDRESS, tokens.alice)
    bob = client_from(svc, BOB_ADDRESS, tokens.bob)
    a = ("alice", ALICE_ADDRESS)
    b = ("bob", BOB_ADDRESS)
    expected: list[Expected] = []
    n = 0

    def payload() -> str:
        nonlocal n
        n += 1
        return f"{MARKER}-{n}"

    try:
        await alice.save_entity("note", "n1", {"text": payload()})
        expected.append((changes.ENTITY_SAVED, "n1", *a))
        await bob.save_entity("note", "n1", {"text": payload()}, expected_version=1)
        expected.append((changes.ENTITY_SAVED, "n1", *b))
        await bob.save_entity("note", "n2", {"text": payload()}, ttl=3600)
        expected.append((changes.ENTITY_SAVED, "n2", *b))
        await alice.append_messages([{"role": "user", "content": payload()}], "chat")
        expected.append((changes.CONVERSATION_APPENDED, "chat", *a))
        await bob.append_messages(
            [{"role": "assistant", "content": payload()}, {"content": payload()}], "chat"
        )
        expected.append((changes.CONVERSATION_APPENDED, "chat", *b))
        await alice.pop_message("chat")
        expected.append((changes.CONVERSATION_POPPED, "chat", *a))
        used = await bob.save_tool_usage(
            "search", {"q": payload()}, [payload()], duration_ms=12, conversation_id="chat",
            usage_id="use-1",
        )  # fmt: skip
        expected.append((changes.TOOL_USAGE_RECORDED, used.id, *b))
        # A retry of the same use (same id) is stored once: no second event.
        await bob.save_tool_usage("search", {"q": "again"}, None, usage_id="use-1")
        fb = await alice.save_learning_feedback("planner", "rating", {"why": payload()})
        expected.append((changes.FEEDBACK_SAVED, fb.id, *a))
        await alice.save_conversation_history([{"content": payload()}], "chat")
        expected.append((changes.CONVERSATION_REPLACED, "chat", *a))
        assert await bob.delete_entity("note", "n1") is True
        expected.append((changes.ENTITY_DELETED, "n1", *b))
        assert await bob.delete_entity("note", "n1") is False  # nothing left: no event
        assert await alice.delete_conversation("chat") is True
        expected.append((changes.CONVERSATION_DELETED, "chat", *a))
        used = await alice.save_tool_usage("fetch", None, {"page": payload()})
        expected.append((changes.TOOL_USAGE_RECORDED, used.id, *a))
        # Reads: audited in the logs (MEMSTORE_AUDIT_READS), never in the change log.
        assert await bob.load_entity("note", "n2") is not None
        await alice.query_tool_usage("search")
        # A search is a read too (a POST with the read role); its query is not logged.
        await bob.search_entities(f"{MARKER}-query", mode="keyword")
    finally:
        for client in (alice, bob):
            await client.close()
            assert client._session is not None
            await client._session.close()
    return expected


async def test_the_export_lists_every_write_with_its_actor_and_no_payload(
    service: ServiceProcess, audit_tokens: tuple[AuditTokens, Path]
) -> None:
    tokens, _ = audit_tokens
    started = time.time()
    expected = await scripted_session(service, tokens)

    async with MemoryClient(service.url, NS, token=tokens.alice) as alice:
        events = [e async for e in alice.export_audit()]
    assert [(e.kind, key_of(e), e.actor, e.address) for e in events] == expected
    assert [e.position for e in events] == list(range(1, len(expected) + 1))
    assert all(started - 1 <= e.timestamp <= time.time() + 1 for e in events)
    assert events[0].entity_type == "note" and events[1].version == 2

    # The raw answer: JSON lines, one event each, no payload byte anywhere.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{service.url}/v1/namespaces/{NS}/audit",
            headers={"Authorization": f"Bearer {tokens.alice}"},
        ) as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "application/x-ndjson"
        raw = await resp.read()
    assert MARKER.encode() not in raw
    lines = raw.decode().splitlines()
    assert [ChangeEvent(**orjson.loads(line)) for line in lines] == events
    for secret in (tokens.alice, tokens.bob, tokens.carol):
        assert secret.encode() not in raw

    # The CLI prints the same lines; --after resumes after a position.
    env = {"MEMSTORE_URL": service.url, "MEMORY_NAMESPACE": NS, "MEMSTORE_TOKEN": tokens.alice}
    printed = run("audit", "export", env=env)
    assert printed.returncode == 0, printed.stderr
    assert MARKER not in printed.stdout
    assert [ChangeEvent(**orjson.loads(x)) for x in printed.stdout.splitlines()] == events
    tail = run("audit", "export", "--after", str(len(expected) - 2), env=env)
    assert [orjson.loads(x)["position"] for x in tail.stdout.splitlines()] == [
        len(expected) - 1,
        len(expected),
    ]
    later = run("audit", "export", "--since", str(time.time() + 60), env=env)
    assert later.returncode == 0 and later.stdout == ""

    # Reads were audited in the service's log, as JSON lines without payloads.
    audit_lines = [
        orjson.loads(line)
        for line in service.logs().splitlines()
        if line.startswith("{") and '"memstore.audit"' in line
    ]
    reads = [(x["actor"], x["address"], x["operation"], x["keys"]) for x in audit_lines]
    assert ("bob", BOB_ADDRESS, "getEntity", {"entity_type": "note", "entity_id": "n2"}) in reads
    assert ("alice", ALICE_ADDRESS, "queryToolUsage", {"tool_name": "search"}) in reads
    assert ("bob", BOB_ADDRESS, "searchEntities", {}) in reads
    assert all(x["namespace"] == NS for x in audit_lines)
    assert MARKER not in service.logs()


async def test_a_token_without_the_admin_role_cannot_export(
    service: ServiceProcess, audit_tokens: tuple[AuditTokens, Path]
) -> None:
    tokens, _ = audit_tokens
    for token in (tokens.carol, tokens.bob):
        async with MemoryClient(service.url, NS, token=token) as client:
            with pytest.raises(PermissionDeniedError):
                _ = [e async for e in client.export_audit()]
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{service.url}/v1/namespaces/{NS}/audit",
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            assert resp.status == 403
            assert (await resp.json())["code"] == "forbidden"
    env = {"MEMSTORE_URL": service.url, "MEMORY_NAMESPACE": NS, "MEMSTORE_TOKEN": tokens.carol}
    refused = run("audit", "export", env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: forbidden:"), refused.stderr


async def test_reads_through_mcp_are_audited_too(
    service: ServiceProcess, audit_tokens: tuple[AuditTokens, Path]
) -> None:
    tokens, _ = audit_tokens
    async with connect(service.url, tokens.carol) as mcp:
        result = await mcp.call_tool(
            "recall", {"namespace": NS, "entity_type": "note", "entity_id": "n2"}
        )
        assert not result.is_error, result
        await mcp.read_resource(f"memstore://{NS}/summary")
    lines = [
        orjson.loads(line)
        for line in service.logs().splitlines()
        if line.startswith("{") and '"memstore.audit"' in line
    ]
    reads = [(x["actor"], x["operation"], x["keys"], x["status"]) for x in lines]
    assert ("carol", "mcp:recall", {"entity_type": "note", "entity_id": "n2"}, 200) in reads
    assert ("carol", "mcp:resources/read", {"uri": f"memstore://{NS}/summary"}, 200) in reads
    assert MARKER not in service.logs()
