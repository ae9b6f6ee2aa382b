"""kopf handlers: thin wrappers around :class:`memstore_operator.reconcile.Reconciler`.

create/update/resume run a reconcile and turn its outcome into kopf's errors:
``PermanentError`` for an invalid spec (with a Warning Event and a status condition),
``TemporaryError`` while a referenced Secret is missing. A periodic resync (a plain
asyncio task, not a kopf timer, so no finalizer is put on the resources) re-runs the same
reconcile to follow Deployment readiness and backend reachability and to repair drift.
Deletion is left to ownerReferences and the garbage collector.

Backups, scheduled backups and restores (:mod:`memstore_operator.backup_reconcile`) are
followed by event handlers (on their resources and on the Jobs they run: stateless, so
kopf writes nothing on those objects) and by a periodic sweep that also fires the
schedules.

The operator's state lives in kopf's memo (:class:`OperatorMemo`), which
:mod:`memstore_operator.cli` creates with the settings and the startup handler fills in.
kopf hands every resource handler a shallow copy of it, so they all share its objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kopf

from memstore_operator import backups
from memstore_operator import constants as c
from memstore_operator.backup_reconcile import BackupReconciler
from memstore_operator.kube import Kube, load_config
from memstore_operator.reconcile import Reconciler
from memstore_operator.settings import OperatorSettings
from memstore_operator.telemetry import TRIGGERS, Telemetry, setup_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

#: Seconds between two sweeps of the backup resources (at most; the resync period when
#: shorter). Cron schedules have minutes as their finest unit.
BACKUP_SWEEP_SECONDS = 5.0


@dataclass
class OperatorMemo:
    """kopf's memo for this operator: the settings, and what the startup handler builds."""

    settings: OperatorSettings
    reconciler: Reconciler | None = None
    backups: BackupReconciler | None = None
    resync: asyncio.Task[None] | None = None
    sweep: asyncio.Task[None] | None = None
    tracing: TracerProvider | None = None

    def started(self) -> Reconciler:
        if self.reconciler is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.reconciler

    def backups_started(self) -> BackupReconciler:
        if self.backups is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.backups


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


async def _backup_sweep_loop(backups_: BackupReconciler, settings: OperatorSettings) -> None:
    period = min(BACKUP_SWEEP_SECONDS, float(settings.resync_seconds))
    while True:
        try:
            await asyncio.to_thread(backups_.sweep)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("backup sweep failed")
        await asyncio.sleep(period)


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
    memo.backups = BackupReconciler(memo.reconciler.kube, telemetry, list(ours.namespaces))
    memo.resync = asyncio.create_task(_resync_loop(memo.reconciler, ours))
    memo.sweep = asyncio.create_task(_backup_sweep_loop(memo.backups, ours))


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    if not isinstance(memo, OperatorMemo):
        return
    for task in (memo.resync, memo.sweep):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    memo.resync = memo.sweep = None
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


def _live(event: Mapping[str, Any], body: kopf.Body) -> tuple[str, str] | None:
    """(namespace, name) of the object of an event, unless it is being deleted."""
    if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        return None
    meta = body["metadata"]
    return str(meta["namespace"]), str(meta["name"])


@kopf.on.event(c.GROUP, c.VERSION, backups.BACKUP_PLURAL)
def backup_event(event: Mapping[str, Any], body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    if (key := _live(event, body)) is not None:
        memo.backups_started().reconcile_backup(*key)


@kopf.on.event(c.GROUP, c.VERSION, backups.RESTORE_PLURAL)
def restore_event(event: Mapping[str, Any], body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    if (key := _live(event, body)) is not None:
        memo.backups_started().reconcile_restore(*key)


@kopf.on.event(c.GROUP, c.VERSION, backups.SCHEDULE_PLURAL)
def schedule_event(event: Mapping[str, Any], body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    if (key := _live(event, body)) is not None:
        memo.backups_started().reconcile_schedule(*key)


@kopf.on.event("batch", "v1", "jobs", labels={backups.RUN_LABEL: kopf.PRESENT})
def job_event(event: Mapping[str, Any], body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    """A Job of a backup or restore changed: follow its owner (for a retention Job, the
    schedule of the backup whose files it deletes)."""
    if event.get("type") == "DELETED":
        return
    meta = body["metadata"]
    namespace = str(meta["namespace"])
    rec = memo.backups_started()
    for owner in meta.get("ownerReferences") or []:
        kind, name = owner.get("kind"), str(owner.get("name"))
        if kind == backups.RESTORE_KIND:
            rec.reconcile_restore(namespace, name)
        elif kind == backups.BACKUP_KIND:
            if meta.get("labels", {}).get(backups.RUN_LABEL) == "backup-delete":
                backup = rec.kube.get_object(backups.BACKUP_PLURAL, namespace, name)
                schedule = ((backup or {}).get("metadata", {}).get("labels") or {}).get(
                    backups.SCHEDULE_LABEL
                )
                if schedule:
                    rec.reconcile_schedule(namespace, str(schedule))
            else:
                rec.reconcile_backup(namespace, name)
