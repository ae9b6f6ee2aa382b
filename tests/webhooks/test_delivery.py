"""Webhooks end to end: real ``memstore serve`` processes (embedded backend) deliver to a
receiver on loopback; signatures are checked with the Standard Webhooks library, as a
receiver would, and with an HMAC written here from the spec."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.procs import ServiceProcess
from tests.support.shared_backend import backend_env
from tests.webhooks.conftest import FAST, Delivery, Receiver, sample, scrape, until

NS = "team"
HOOK = f"/v1/namespaces/{NS}/webhooks"


async def workload(http: aiohttp.ClientSession, base: str) -> list[str]:
    """One write of each family; returns the kinds of the change events it makes, in order."""
    ns = f"{base}/v1/namespaces/{NS}"
    kinds = []
    for i in range(4):
        r = await http.put(f"{ns}/entities/note/n{i}", json={"data": {"text": f"payload-{i}"}})
        assert r.status == 201, await r.text()
        kinds.append("entity.saved")
    r = await http.put(f"{ns}/entities/task/t1", json={"data": {"x": 1}})
    kinds.append("entity.saved")
    r = await http.delete(f"{ns}/entities/note/n0")
    assert r.status == 204
    kinds.append("entity.deleted")
    r = await http.post(f"{ns}/conversations/c1/messages", json={"messages": [{"m": "hi"}]})
    assert r.status == 201
    kinds.append("conversation.appended")
    r = await http.post(f"{ns}/tool-usage", json={"tool_name": "search", "input": "q"})
    assert r.status == 201
    kinds.append("tool_usage.recorded")
    r = await http.post(
        f"{ns}/feedback", json={"agent_name": "bot", "feedback_type": "t", "data": 1}
    )
    assert r.status == 201
    kinds.append("feedback.saved")
    return kinds


def spec_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """The spec's signature, computed without the library: HMAC-SHA256 over
    ``id.timestamp.body`` keyed with the base64-decoded part of ``whsec_...``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, delivery: Delivery) -> Any:
    return StandardWebhook(secret).verify(delivery.body, delivery.headers)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(**env: str) -> ServiceProcess:
        svc = ServiceProcess(tmp_path, {**FAST, **env}).start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


async def test_a_receiver_failing_the_first_three_gets_every_event_in_order(
    service: Callable[..., ServiceProcess], make_receiver: Callable[..., Any]
) -> None:
    receiver: Receiver = await make_receiver(fail_first=3)
    deletes_only: Receiver = await make_receiver()
    svc = service()
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{svc.url}{HOOK}/all", json={"url": receiver.url})
        assert r.status == 201, await r.text()
        created = await r.json()
        secret = created["secret"]
        assert secret.startswith("whsec_")
        r = await http.put(
            f"{svc.url}{HOOK}/deletes",
            json={"url": deletes_only.url, "kinds": ["entity.deleted"]},
        )
        assert r.status == 201
        kinds = await workload(http, svc.url)

        await until(lambda: len(set(receiver.accepted_positions())) == len(kinds), "every event")
        await until(lambda: deletes_only.accepted, "the delete")

    # The first three attempts failed (all of the first event), then every event came, in
    # position order; at least once: an event may repeat, none is missing.
    assert [d.status for d in receiver.requests[:4]] == [500, 500, 500, 204]
    assert {d.event["position"] for d in receiver.requests[:4]} == {1}
    positions = receiver.accepted_positions()
    assert positions == sorted(positions)
    assert sorted(set(positions)) == list(range(1, len(kinds) + 1))
    by_position = {d.event["position"]: d.event for d in receiver.accepted}
    assert [by_position[p]["kind"] for p in range(1, len(kinds) + 1)] == kinds
    assert all(e["namespace"] == NS for e in by_position.values())
    # Names and versions only, never a payload.
    assert not any(b"payload-" in d.body for d in receiver.requests)
    assert by_position[1]["entity_type"] == "note" and by_position[1]["version"] == 1
    # Every attempt of one event carries the same webhook-id; every request verifies.
    assert len({d.headers["webhook-id"] for d in receiver.requests[:4]}) == 1
    for d in receiver.requests:
        assert verify(secret, d)["position"] == d.event["position"]
        assert d.headers["webhook-signature"] == spec_signature(secret, d.headers, d.body)
        assert d.headers["Content-Type"] == "application/json"
    # The filtered webhook got the delete only.
    assert [d.event["kind"] for d in deletes_only.accepted] == ["entity.deleted"]


async def test_a_bad_signature_is_detectable(
    service: Callable[..., ServiceProcess], make_receiver: Callable[..., Any]
) -> None:
    receiver: Receiver = await make_receiver()
    svc = service()
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{svc.url}{HOOK}/h", json={"url": receiver.url})
        secret = (await r.json())["secret"]
        await http.put(f"{svc.url}/v1/namespaces/{NS}/entities/note/a", json={"data": {}})
        await until(lambda: receiver.accepted, "a delivery")
    good = receiver.accepted[0]
    assert verify(secret, good)["kind"] == "entity.saved"
    tampered = Delivery(good.headers, good.body.replace(b'"note"', b'"nope"'), 204)
    with pytest.raises(WebhookVerificationError):
        verify(secret, tampered)
    other_secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        verify(other_secret, good)
    replayed_id = Delivery({**good.headers, "webhook-id": "team:999"}, good.body, 204)
    with pytest.raises(WebhookVerificationError):
        verify(secret, replayed_id)
    assert (
        spec_signature(secret, tampered.headers, tampered.body) != good.headers["webhook-signature"]
    )


async def test_events_are_dead_lettered_after_the_last_attempt(
    service: Callable[..., ServiceProcess], make_receiver: Callable[..., Any]
) -> None:
    failing: Receiver = await make_receiver(always_fail=True)
    svc = service(MEMSTORE_WEBHOOK_MAX_ATTEMPTS="2")
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{svc.url}{HOOK}/down", json={"url": failing.url})
        assert r.status == 201
        for i in range(3):
            await http.put(f"{svc.url}/v1/namespaces/{NS}/entities/note/{i}", json={"data": {}})

        async def dead_letters() -> float:
            return sample(
                await scrape(http, svc.url),
                "memstore_webhook_dead_letters_total",
                webhook=f"{NS}/down",
            )

        for _ in range(600):
            if await dead_letters() == 3:
                break
            await asyncio.sleep(0.05)
        samples = await scrape(http, svc.url)
    assert sample(samples, "memstore_webhook_dead_letters_total", webhook=f"{NS}/down") == 3
    # Two attempts per event, each a failure, and delivery moved on after each.
    assert [d.event["position"] for d in failing.requests] == [1, 1, 2, 2, 3, 3]
    assert (
        sample(
            samples, "memstore_webhook_deliveries_total", webhook=f"{NS}/down", outcome="http_error"
        )
        == 6
    )
    assert (
        sample(samples, "memstore_webhook_delivery_duration_seconds_count", webhook=f"{NS}/down")
        == 6
    )
    assert "dead-lettered" in svc.logs()


async def test_a_hanging_receiver_does_not_stall_other_webhooks(
    service: Callable[..., ServiceProcess], make_receiver: Callable[..., Any]
) -> None:
    hanging: Receiver = await make_receiver(hold=asyncio.Event())  # never answers
    healthy: Receiver = await make_receiver()
    svc = service()
    async with aiohttp.ClientSession() as http:
        for name, receiver in (("stuck", hanging), ("ok", healthy)):
            r = await http.put(f"{svc.url}{HOOK}/{name}", json={"url": receiver.url})
            assert r.status == 201
        for i in range(5):
            await http.put(f"{svc.url}/v1/namespaces/{NS}/entities/note/{i}", json={"data": {}})
        await until(lambda: set(healthy.accepted_positions()) == set(range(1, 6)), "5 events")
        # Meanwhile the hanging receiver never answered; its attempts time out and retry.
        assert hanging.accepted == []
        assert hanging.entered >= 1

        async def timeouts() -> float:
            samples = await scrape(http, svc.url)
            return sample(
                samples,
                "memstore_webhook_deliveries_total",
                webhook=f"{NS}/stuck",
                outcome="timeout",
            )

        for _ in range(600):
            if await timeouts() >= 1:
                break
            await asyncio.sleep(0.05)
        assert await timeouts() >= 1
    assert hanging.hold is not None
    hanging.hold.set()  # let the receiver stop


async def test_two_replicas_deliver_every_event_one_at_a_time(
    tmp_path: Path, make_receiver: Callable[..., Any]
) -> None:
    """Two processes on one store (the embedded file shared, cache off): one holds the
    webhook's claim; killed, the other takes over after the lease and misses nothing."""
    receiver: Receiver = await make_receiver(delay=0.02)
    env = {**FAST, "MEMSTORE_EMBEDDED_SHARED": "true", "MEMSTORE_CACHE_TTL_SECONDS": "0"}
    a = ServiceProcess(tmp_path, env).start()
    b = ServiceProcess(tmp_path, env).start()
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.put(f"{a.url}{HOOK}/h", json={"url": receiver.url})
            assert r.status == 201
            for i in range(20):
                via = a if i % 2 else b
                r = await http.put(
                    f"{via.url}/v1/namespaces/{NS}/entities/n/{i}", json={"data": {}}
                )
                assert r.status == 201
            await until(lambda: set(receiver.accepted_positions()) == set(range(1, 21)), "20")
            held = []
            for svc in (a, b):
                s = await scrape(http, svc.url)
                ok = sample(
                    s, "memstore_webhook_deliveries_total", webhook=f"{NS}/h", outcome="success"
                )
                held.append(ok > 0)
            assert held.count(True) >= 1
            holder, other = (a, b) if held[0] else (b, a)
            holder.stop(signal.SIGKILL)
            for i in range(20, 30):
                r = await http.put(
                    f"{other.url}/v1/namespaces/{NS}/entities/n/{i}", json={"data": {}}
                )
                assert r.status == 201
            await until(lambda: set(receiver.accepted_positions()) >= set(range(1, 31)), "30")
    finally:
        a.stop()
        b.stop()
    assert receiver.max_in_flight == 1
    positions = receiver.accepted_positions()
    assert sorted(set(positions)) == list(range(1, 31))


async def test_a_replica_killed_mid_attempt_leaves_the_event_to_the_next(
    tmp_path: Path, make_receiver: Callable[..., Any]
) -> None:
    """At least once across a crash: the first attempt never gets its answer (the receiver
    holds it) and its replica is killed; a replica started afterwards takes the claim once
    the lease has passed and sends the same event again."""
    receiver: Receiver = await make_receiver(hold=asyncio.Event(), hold_first=1)
    env = {
        **FAST,
        "MEMSTORE_EMBEDDED_SHARED": "true",
        "MEMSTORE_CACHE_TTL_SECONDS": "0",
        # The held attempt must not time out before the kill.
        "MEMSTORE_WEBHOOK_TIMEOUT_SECONDS": "3",
        "MEMSTORE_WEBHOOK_LEASE_SECONDS": "6",
    }
    a = ServiceProcess(tmp_path, env).start()
    b: ServiceProcess | None = None
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.put(f"{a.url}{HOOK}/h", json={"url": receiver.url})
            assert r.status == 201
            r = await http.put(f"{a.url}/v1/namespaces/{NS}/entities/n/1", json={"data": {}})
            assert r.status == 201
            await until(lambda: receiver.entered == 1, "the first attempt")
            a.stop(signal.SIGKILL)
            b = ServiceProcess(tmp_path, env).start()
            await until(lambda: receiver.accepted, "the event, from the other replica")
    finally:
        a.stop()
        if b is not None:
            b.stop()
        assert receiver.hold is not None
        receiver.hold.set()
    assert receiver.accepted_positions() == [1]
    # The same message: a receiver that saw the first one would drop it by its id.
    assert receiver.arrived_ids[0] == receiver.arrived_ids[1] == f"{NS}:1"


@pytest.mark.parametrize("backend", ["embedded", "mongodb"])
async def test_secrets_never_shown_after_the_put(
    tmp_path: Path, make_receiver: Callable[..., Any], backend: str, request: pytest.FixtureRequest
) -> None:
    """Also on MongoDB: its driver logs every command and reply at DEBUG."""
    receiver: Receiver = await make_receiver()
    store = {} if backend == "embedded" else backend_env(request, backend, tmp_path)
    svc = ServiceProcess(tmp_path, {**FAST, **store, "MEMSTORE_LOG_LEVEL": "DEBUG"}).start()
    given = "whsec_" + base64.b64encode(b"given-secret-bytes-0123456789").decode()
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.put(f"{svc.url}{HOOK}/gen", json={"url": receiver.url})
            generated = (await r.json())["secret"]
            r = await http.put(
                f"{svc.url}{HOOK}/given", json={"url": receiver.url, "secret": given}
            )
            assert r.status == 201
            given_answer = await r.text()
            # Replacing without a secret keeps the webhook's own: still verifies.
            r = await http.put(f"{svc.url}{HOOK}/gen", json={"url": receiver.url, "kinds": []})
            assert r.status == 200
            replaced_answer = await r.text()
            await http.put(f"{svc.url}/v1/namespaces/{NS}/entities/note/a", json={"data": {}})
            await until(lambda: len(receiver.accepted) >= 2, "both webhooks")
            answers = [given_answer, replaced_answer]
            for path in (HOOK, f"{HOOK}/gen", f"{HOOK}/given"):
                r = await http.get(f"{svc.url}{path}")
                assert r.status == 200
                answers.append(await r.text())
            listed = orjson.loads(answers[2])["items"]
            assert [h["name"] for h in listed] == ["gen", "given"]
            assert all(h["secret"] == "**********" for h in listed)
            # The reserved namespace is out of the entity API's reach.
            for bad in ("_webhooks", "%5Fwebhooks"):
                r = await http.get(f"{svc.url}/v1/namespaces/{bad}/entities/webhook")
                assert r.status == 400
                answers.append(await r.text())
            r = await http.get(f"{svc.url}/v1/summary")
            answers.append(await r.text())
            assert "_webhooks" not in answers[-1]
    finally:
        svc.stop()
    for secret in (generated, given):
        key_part = secret.removeprefix("whsec_")
        for text in [*answers, svc.logs()]:
            assert key_part not in text
    by_name = {d.headers["webhook-id"]: d for d in receiver.accepted}
    assert by_name
    verified = 0
    for d in receiver.accepted:
        for secret in (generated, given):
            try:
                verify(secret, d)
                verified += 1
            except WebhookVerificationError:
                pass
    assert verified == len(receiver.accepted)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.test/x"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": "http://127.0.0.1:99999/x"}, "url"),
        ({"url": "http://127.0.0.1/a b"}, "url"),
        ({"url": "http://127.0.0.1/x", "secret": "not-a-secret"}, "secret"),
        ({"url": "http://127.0.0.1/x", "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"url": "http://127.0.0.1/x", "kinds": ["entity.exploded"]}, "kinds.0"),
        ({"url": "http://127.0.0.1/x", "entity_types": ["a b"]}, "entity_types.0"),
        ({"url": "http://127.0.0.1/x", "extra": 1}, "extra"),
    ],
)
async def test_bad_webhooks_are_refused_naming_the_field(
    live_service: ServiceProcess, body: dict[str, Any], field: str
) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{live_service.url}/v1/namespaces/bad/webhooks/w", json=body)
        answer = await r.json()
        assert r.status == 400, answer
        assert answer["code"] == "invalid_input"
        named = answer["details"].get("field") or answer["details"]["problems"][0]["field"]
        assert named == field, answer
        if "secret" in body:
            assert body["secret"] not in str(answer)
        r = await http.get(f"{live_service.url}/v1/namespaces/bad/webhooks/w")
        assert r.status == 404
        r = await http.put(f"{live_service.url}/v1/namespaces/bad/webhooks/a%20b", json=body)
        assert r.status == 400
        assert (await r.json())["details"]["field"] == "webhook_name"


async def test_webhooks_from_the_file_are_listed_delivered_and_not_changed_by_the_api(
    tmp_path: Path, make_receiver: Callable[..., Any]
) -> None:
    receiver: Receiver = await make_receiver()
    secret = "whsec_" + base64.b64encode(b"file-secret-0123456789abcdef").decode()
    path = tmp_path / "webhooks.json"
    path.write_bytes(
        orjson.dumps(
            {"webhooks": [{"name": "ops", "namespace": NS, "url": receiver.url, "secret": secret}]}
        )
    )
    svc = ServiceProcess(tmp_path, {**FAST, "MEMSTORE_WEBHOOKS_FILE": str(path)}).start()
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"{svc.url}{HOOK}/ops")
            hook = await r.json()
            assert (hook["source"], hook["secret"], hook["url"]) == (
                "file",
                "**********",
                receiver.url,
            )
            r = await http.put(f"{svc.url}{HOOK}/ops", json={"url": receiver.url})
            assert r.status == 400
            assert (await r.json())["details"]["field"] == "webhook_name"
            r = await http.delete(f"{svc.url}{HOOK}/ops")
            assert r.status == 400
            await http.put(f"{svc.url}/v1/namespaces/{NS}/entities/note/a", json={"data": {}})
            await until(lambda: receiver.accepted, "a delivery")
    finally:
        svc.stop()
    assert verify(secret, receiver.accepted[0])["kind"] == "entity.saved"
    assert secret.removeprefix("whsec_") not in svc.logs()


def test_an_unusable_webhooks_file_stops_the_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    secret = "whsec_" + base64.b64encode(b"file-secret-0123456789abcdef").decode()
    path = tmp_path / "webhooks.json"
    path.write_bytes(
        orjson.dumps(
            {"webhooks": [{"name": "ops", "namespace": NS, "url": "gopher://x", "secret": secret}]}
        )
    )
    svc = ServiceProcess(tmp_path, {"MEMSTORE_WEBHOOKS_FILE": str(path)})
    done = subprocess.run(
        [sys.executable, "-m", "memstore", "serve"],
        env=svc.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "webhooks[0]" in done.stderr and "url must be http:// or https://" in done.stderr
    assert secret.removeprefix("whsec_") not in done.stderr + done.stdout
