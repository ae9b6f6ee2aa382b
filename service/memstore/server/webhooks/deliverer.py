"""Delivery of change events to webhooks: at least once, in position order, one replica at
a time per webhook.

Every replica runs a :class:`WebhookDeliverer`. It reads the webhooks every
``MEMSTORE_WEBHOOK_POLL_SECONDS`` and keeps one task per webhook, so a slow receiver only
delays its own webhook. A task delivers only while its replica holds the webhook's claim:

* **Claim and cursor are one entity** (``state`` in the reserved namespace:
  ``{position, owner, until}``), written only with ``expected_version`` (compare and set).
  A replica takes the claim when nobody holds it or ``until`` (wall clock) has passed, and
  every write it makes renews it (``until`` = now + ``MEMSTORE_WEBHOOK_LEASE_SECONDS``). A
  replica that lost the claim learns it at its next write (a version conflict) and stops.
* **Never two at once**: before each attempt the holder renews when less than half the lease
  is left; the lease is at least twice the attempt timeout, so an attempt ends before the
  claim could lapse (assuming replica clocks agree to within the rest of that margin).
* **At least once**: the position moves past an event only after a 2xx answer (or after it
  was dead-lettered); a replica that dies mid-attempt leaves the position before that event,
  and the next holder sends it again. Receivers drop duplicates by ``webhook-id``.
* **Retries**: attempt n+1 waits ``min(cap, base * 2^(n-1))``, its second half drawn at
  random (jitter), renewing the claim while it waits; after ``MEMSTORE_WEBHOOK_MAX_ATTEMPTS``
  attempts the event is dead-lettered (counted in
  ``memstore_webhook_dead_letters_total{webhook}``, logged) and delivery moves on. Events
  that retention removed before they were delivered are counted there too.

The request body is the event (``ChangeEvent.to_dict()``) plus its ``namespace``: names and
versions, never payloads. Redirects are not followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from typing import Any

import aiohttp
import orjson

from memstore.core.errors import ChangesPrunedError, ConflictError, MemoryStoreError
from memstore.core.records import ChangeEvent
from memstore.core.settings import WebhookSettings
from memstore.memory.manager import DistributedMemoryManager
from memstore.observability.metrics import PrometheusMetrics, package_version
from memstore.server.webhooks.config import (
    STATE_TYPE,
    Webhook,
    WebhookStore,
    last_position,
    new_state,
)
from memstore.server.webhooks.signing import Signer

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    """Another replica holds the webhook's claim now."""


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """The wait after failed attempt ``attempt`` (1, 2, ...): exponential, capped, and half
    of it drawn at random so that retries of many events do not arrive together."""
    ceiling = min(cap, base * (1 << (attempt - 1)))
    jitter: float = random.uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


class WebhookDeliverer:
    """One per process: keeps a delivery task per configured webhook."""

    def __init__(
        self,
        manager: DistributedMemoryManager,
        store: WebhookStore,
        settings: WebhookSettings,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.manager = manager
        self.store = store
        self.settings = settings
        self.metrics = metrics
        #: This replica, as written in the claims it holds.
        self.owner = uuid.uuid4().hex
        self._workers: dict[tuple[str, str], tuple[Webhook, asyncio.Task[None]]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"WebhookDeliverer(owner={self.owner!r}, webhooks={len(self._workers)})"

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "start() first"
        return self._session

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds),
            # One request at a time per webhook: the pool needs no bound of its own.
            connector=aiohttp.TCPConnector(limit=0),
            headers={"User-Agent": f"memstore/{package_version()}"},
        )
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="memstore-webhooks"
        )

    async def stop(self) -> None:
        tasks = [task for _, task in self._workers.values()]
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        if self._session is not None:
            await self._session.close()

    async def _supervise(self) -> None:
        failing = False
        while True:
            try:
                hooks = await self.store.list_all()
            except MemoryStoreError as exc:
                if not failing:  # once per outage, not every poll
                    log.warning("could not read the webhooks; keeping the current ones: %s", exc)
                failing = True
            else:
                failing = False
                self._sync(hooks)
            await asyncio.sleep(self.settings.webhook_poll_seconds)

    def _sync(self, hooks: list[Webhook]) -> None:
        wanted = {(h.namespace, h.name): h for h in hooks}
        for key, (hook, task) in list(self._workers.items()):
            if wanted.get(key) != hook or task.done():
                # Removed or changed (URL, secret, filters): a changed one starts afresh
                # from its stored position; an attempt cut short is sent again.
                task.cancel()
                del self._workers[key]
        for key, hook in wanted.items():
            if key not in self._workers:
                worker = _Worker(self, hook)
                task = asyncio.get_running_loop().create_task(
                    worker.run(), name=f"memstore-webhook {hook.label}"
                )
                self._workers[key] = (hook, task)


class _Worker:
    """Delivers one webhook's events while this replica holds its claim."""

    def __init__(self, deliverer: WebhookDeliverer, hook: Webhook) -> None:
        self.d = deliverer
        self.hook = hook
        self.settings = deliverer.settings
        self.signer = Signer(hook.secret)
        self.state_view = deliverer.store.view
        self.events_view = deliverer.manager.for_checked_namespace(hook.namespace)
        self.lease = self.settings.webhook_lease_seconds
        # While held: the state's version, the position delivered, and when (monotonic
        # clock) the claim lapses.
        self.version = 0
        self.position = 0
        self.deadline = 0.0

    async def run(self) -> None:
        # One line when delivery pauses for a reason (a backend outage is not logged every
        # poll), one when it resumes.
        paused: str | None = None
        try:
            while True:
                try:
                    if await self._claim():
                        if paused is not None:
                            log.info("webhook delivery resumed", extra=self._where())
                            paused = None
                        await self._deliver_while_holding()
                except ClaimLost:
                    log.info("webhook claim taken by another replica", extra=self._where())
                except MemoryStoreError as exc:
                    if paused != exc.code:
                        log.warning("webhook delivery paused: %s", exc, extra=self._where())
                        paused = exc.code
                except Exception:
                    log.exception("webhook delivery failed", extra=self._where())
                await asyncio.sleep(self.settings.webhook_poll_seconds)
        except asyncio.CancelledError:
            await self._release()
            raise

    def _where(self) -> dict[str, Any]:
        return {"webhook": self.hook.label}

    # -- the claim ------------------------------------------------------------------------

    async def _claim(self) -> bool:
        record = await self.state_view.get_entity(STATE_TYPE, self.hook.key)
        if record is None:
            if self.hook.source != "file":
                # An API webhook's state is written by its PUT: gone means deleted (the
                # supervisor stops this task at its next read of the webhooks).
                return False
            # A webhook from the file, seen for the first time: from the current position.
            position, expected = await last_position(self.events_view), 0
        else:
            state = record.data
            if state.get("owner") not in (None, self.d.owner) and state["until"] > time.time():
                return False
            position, expected = int(state["position"]), record.version
        try:
            await self._write(position, expected)
        except ConflictError:
            return False  # another replica was quicker
        return True

    async def _write(self, position: int, expected: int) -> None:
        started = time.monotonic()
        record = await self.state_view.save_entity(
            STATE_TYPE,
            self.hook.key,
            new_state(position, self.d.owner, self.lease),
            expected_version=expected,
        )
        self.version, self.position, self.deadline = record.version, position, started + self.lease

    async def _commit(self, position: int) -> None:
        """Move the position (and renew the claim); ``ClaimLost`` if it was taken."""
        try:
            await self._write(position, self.version)
        except ConflictError:
            raise ClaimLost from None

    async def _renew_if_due(self) -> None:
        if time.monotonic() > self.deadline - self.lease / 2:
            await self._commit(self.position)

    async def _release(self) -> None:
        """On stop: give the claim up at once, so another replica need not wait it out."""
        if self.version == 0 or time.monotonic() > self.deadline:
            return
        with contextlib.suppress(MemoryStoreError):
            await asyncio.shield(
                self.state_view.save_entity(
                    STATE_TYPE,
                    self.hook.key,
                    new_state(self.position),
                    expected_version=self.version,
                )
            )

    async def _sleep_holding(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.lease / 4))
            await self._renew_if_due()

    # -- delivery -------------------------------------------------------------------------

    async def _deliver_while_holding(self) -> None:
        while True:
            await self._renew_if_due()
            try:
                page = await self.events_view.read_changes(after=self.position)
            except ChangesPrunedError as exc:
                missed = exc.first_position - 1 - self.position
                log.error(
                    "webhook events removed by retention before delivery; skipping them",
                    extra={
                        **self._where(),
                        "missed": missed,
                        "resume_after": exc.first_position - 1,
                    },
                )
                if self.d.metrics is not None:
                    self.d.metrics.count_webhook_dead_letters(self.hook.label, missed)
                await self._commit(exc.first_position - 1)
                continue
            if not page.events:
                await self._sleep_holding(self.settings.webhook_poll_seconds)
                continue
            passed_over = None
            for event in page.events:
                if self.hook.matches(event):
                    await self._deliver(event)
                    await self._commit(event.position)
                    passed_over = None
                else:
                    passed_over = event.position
            if passed_over is not None:
                await self._commit(passed_over)

    async def _deliver(self, event: ChangeEvent) -> None:
        body = orjson.dumps({"namespace": self.hook.namespace, **event.to_shared_dict()})
        message_id = f"{self.hook.namespace}:{event.position}"
        s = self.settings
        outcome = ""
        for attempt in range(1, s.webhook_max_attempts + 1):
            await self._renew_if_due()
            outcome = await self._attempt(message_id, body)
            if outcome == "success":
                return
            if attempt < s.webhook_max_attempts:
                await self._sleep_holding(
                    backoff_seconds(
                        attempt, s.webhook_backoff_base_seconds, s.webhook_backoff_cap_seconds
                    )
                )
        log.warning(
            "webhook event dead-lettered after the last attempt",
            extra={
                **self._where(),
                "position": event.position,
                "kind": event.kind,
                "attempts": s.webhook_max_attempts,
                "outcome": outcome,
            },
        )
        if self.d.metrics is not None:
            self.d.metrics.count_webhook_dead_letters(self.hook.label)

    async def _attempt(self, message_id: str, body: bytes) -> str:
        headers = {"Content-Type": "application/json", **self.signer.headers(message_id, body)}
        began = time.perf_counter()
        try:
            async with self.d.session.post(
                self.hook.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                outcome = "success" if 200 <= resp.status < 300 else "http_error"
        except TimeoutError:
            outcome = "timeout"
        except (aiohttp.ClientError, OSError):
            outcome = "network_error"
        if self.d.metrics is not None:
            self.d.metrics.observe_webhook(self.hook.label, outcome, time.perf_counter() - began)
        return outcome
