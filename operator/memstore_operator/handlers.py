"""kopf handlers: thin wrappers around :class:`memstore_operator.reconcile.Reconciler`.

create/update/resume run a reconcile and turn its outcome into kopf's errors:
``PermanentError`` for an invalid spec (with a Warning Event and a status condition),
``TemporaryError`` while a referenced Secret is missing. A periodic resync (a plain
asyncio task, not a kopf timer, so no finalizer is put on the resources) re-runs the same
reconcile to follow Deployment readiness and backend reachability and to repair drift.
Deletion is left to ownerReferences and the garbage collector.

The operator's state lives in kopf's memo (:class:`OperatorMemo`), which
:mod:`memstore_operator.cli` creates with the settings and the startup handler fills in.
kopf hands every resource handler a shallow copy of it, so they all share its objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kopf

from memstore_operator import constants as c
from memstore_operator.kube import Kube, load_config
from memstore_operator.reconcile import Reconciler
from memstore_operator.settings import OperatorSettings
from memstore_operator.telemetry import TRIGGERS, Telemetry, setup_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)


@dataclass
class OperatorMemo:
    """kopf's memo for this operator: the settings, and what the startup handler builds."""

    settings: OperatorSettings
    reconciler: Reconciler | None = None
    resync: asyncio.Task[None] | None = None
    tracing: TracerProvider | None = None

    def started(self) -> Reconciler:
        if self.reconciler is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.reconciler


async def _resync_loop(reconciler: Reconciler, settings: OperatorSettings) -> None:
    namespaces = list(settings.namespaces)
    while True:
        await asyncio.sleep(settings.resync_seconds)
        try:
            stores = await asyncio.to_thread(reconciler.kube.list_stores, namespaces)
            phases: list[str] = []
            for body in stores:
                if body.get("metadata", {}).get("deletionTimestamp"):
                    continue
                try:
                    outcome = await asyncio.to_thread(reconciler.reconcile, body, "resync")
                    phases.append(str(outcome.status.get("phase", "")))
                except Exception:
                    log.exception(
                        "resync of %s/%s failed",
                        body["metadata"].get("namespace"),
                        body["metadata"].get("name"),
                    )
            reconciler.telemetry.record_phases(phases)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("resync pass failed")


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    if not isinstance(memo, OperatorMemo):
        raise kopf.PermanentError("start the operator with `memstore-operator`")
    prefix = c.ANNOTATION_PREFIX
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{prefix}/kopf-finalizer"
    settings.posting.level = logging.WARNING
    ours = memo.settings
    # A watch that goes silent is restarted by the client and server timeouts.
    settings.watching.server_timeout = ours.watch_timeout
    settings.watching.client_timeout = ours.watch_timeout + 30
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]

    load_config()
    telemetry = Telemetry()
    telemetry.serve_metrics(ours.metrics_port, ours.metrics_addr)
    memo.tracing = setup_tracing(ours)
    memo.reconciler = Reconciler(Kube(), telemetry, ours.backend_timeout_seconds)
    memo.resync = asyncio.create_task(_resync_loop(memo.reconciler, ours))


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    if not isinstance(memo, OperatorMemo):
        return
    task, memo.resync = memo.resync, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    provider, memo.tracing = memo.tracing, None
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)


@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL)
def reconcile_store(body: kopf.Body, memo: OperatorMemo, reason: str = "resume", **_: Any) -> None:
    trigger = str(reason) if str(reason) in TRIGGERS else "resume"
    outcome = memo.started().reconcile(body, trigger)
    if outcome.invalid is not None:
        kopf.warn(body, reason="InvalidSpec", message=outcome.invalid)
        raise kopf.PermanentError(f"invalid spec: {outcome.invalid}")
    if outcome.missing is not None:
        kopf.warn(body, reason="SecretNotFound", message=outcome.missing)
        raise kopf.TemporaryError(outcome.missing, delay=memo.settings.retry_seconds)
