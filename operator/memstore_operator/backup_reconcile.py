"""Backups, scheduled backups and restores: the glue between the pure functions of
:mod:`memstore_operator.backups`, the API (:mod:`memstore_operator.kube`) and the metrics.

Every pass is idempotent and starts from what the API server holds: a backup or restore
creates its Job once (a fixed name), then follows it to Completed or Failed, after which
it is never run again; a schedule creates the backup that is due (named after its
scheduled time) and applies retention. The kopf event handlers call these on every change
of the resources and of their Jobs; the periodic pass calls them too, so a restarted
operator picks up whatever it missed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from memstore_operator import backups as b
from memstore_operator.kube import Kube
from memstore_operator.model import InvalidSpec, StoreSpec, parse_spec
from memstore_operator.status import Check, set_condition
from memstore_operator.telemetry import Telemetry

log = logging.getLogger(__name__)

FINISHED = ("Completed", "Failed")


class Waiting(Exception):
    """The run cannot start yet (its store or source is not ready): it stays Pending."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CannotRun(Waiting):
    """The run can never start as specified (e.g. its source backup failed): Failed."""


#: What a run's preparation returns: the Job to create and the status fields it adds.
Prepared = tuple[dict[str, Any], dict[str, Any]]


def _api_message(exc: ApiException) -> str:
    raw: Any = exc.body
    try:
        payload = json.loads(raw.decode() if isinstance(raw, bytes) else (raw or ""))
        return str(payload.get("message") or exc.reason)[:1000]
    except (TypeError, ValueError):
        return str(exc.reason)


@dataclass
class BackupReconciler:
    kube: Kube
    telemetry: Telemetry
    namespaces: list[str] = field(default_factory=list)
    _locks: defaultdict[str, threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock)
    )

    # --- shared ---------------------------------------------------------------------

    def _ready_store(self, namespace: str, name: str) -> StoreSpec:
        body = self.kube.get_store(namespace, name)
        if body is None:
            raise Waiting("StoreNotFound", f"MemoryStore {name!r} not found")
        try:
            spec = parse_spec(name, namespace, body.get("spec") or {})
        except InvalidSpec as exc:
            raise Waiting("StoreInvalid", f"MemoryStore {name!r} is invalid: {exc}") from None
        phase = (body.get("status") or {}).get("phase")
        if phase != "Ready":
            raise Waiting("StoreNotReady", f"MemoryStore {name!r} is {phase or 'not reconciled'}")
        return spec

    def _write(self, plural: str, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        if dict(obj.get("status") or {}) == dict(status):
            return  # nothing changed: no write, no new event
        meta = obj["metadata"]
        self.kube.patch_object_status(plural, meta["namespace"], meta["name"], status)

    def _run(self, obj: Mapping[str, Any], prepare: Callable[[], Prepared]) -> dict[str, Any]:
        """Follow the run's Job to Running, Completed or Failed. Without a Job yet,
        ``prepare()`` checks that it can start (raising Waiting: Pending, CannotRun or
        NotRunnable: Failed) and gives the Job to create; once the Job exists it is followed
        whatever happens to the store or the source meanwhile."""
        meta = obj["metadata"]
        namespace, generation = meta["namespace"], int(meta.get("generation") or 0)
        previous = obj.get("status") or {}
        at = b.now()
        job_name = b.job_name(obj)
        job = self.kube.read_job(namespace, job_name)
        if job is None:
            try:
                build, extra = prepare()
            except CannotRun as exc:
                return self._pending(obj, "Failed", exc.reason, str(exc))
            except Waiting as exc:
                return self._pending(obj, "Pending", exc.reason, str(exc))
            except b.NotRunnable as exc:
                return self._pending(obj, "Failed", "TokenUnavailable", str(exc))
            try:
                self.kube.create_job(build)
            except ApiException as exc:
                if exc.status not in (400, 422):
                    raise
                message = f"the API server refused the Job: {_api_message(exc)}"
                check = Check(False, "JobRefused", message)
                return b.run_status(previous, generation, "Failed", check, at, **extra)
            check = Check(None, "Running", f"Job {job_name} created")
            return b.run_status(
                previous, generation, "Running", check, at, jobName=job_name, **extra
            )
        owners = [o.get("uid") for o in job["metadata"].get("ownerReferences") or []]
        if meta["uid"] not in owners:
            check = Check(None, "JobExists", f"waiting for an older Job {job_name} to be deleted")
            return b.run_status(previous, generation, "Pending", check, at)
        outcome = b.job_outcome(job, self.kube.job_pods(namespace, job_name))
        fields = {"jobName": job_name, **b.outcome_fields(outcome)}
        if outcome.state == "Completed":
            check = Check(True, "Succeeded", "the Job completed")
            return b.run_status(previous, generation, "Completed", check, at, **fields)
        if outcome.state == "Failed":
            check = Check(False, "JobFailed", outcome.message or "the Job failed")
            return b.run_status(previous, generation, "Failed", check, at, **fields)
        check = Check(None, "Running", f"Job {job_name} is running")
        return b.run_status(previous, generation, "Running", check, at, **fields)

    def _pending(
        self, obj: Mapping[str, Any], phase: str, reason: str, message: str
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        ok = None if phase == "Pending" else False
        return b.run_status(
            obj.get("status") or {},
            int(meta.get("generation") or 0),
            phase,
            Check(ok, reason, message),
            b.now(),
        )

    # --- MemoryStoreBackup ---------------------------------------------------------

    def reconcile_backup(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._locks[f"backup/{namespace}/{name}"]:
            obj = self.kube.get_object(b.BACKUP_PLURAL, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            status = self._backup_status(obj)
            self._write(b.BACKUP_PLURAL, obj, status)
            if status.get("phase") == "Completed":
                self._record_success(namespace, obj, status)
            return status

    def _backup_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        previous = obj.get("status") or {}
        if previous.get("phase") in FINISHED:
            return dict(previous)
        spec = obj["spec"]

        def prepare() -> Prepared:
            store = self._ready_store(obj["metadata"]["namespace"], spec["memoryStore"]["name"])
            claim, path = b.dump_path(obj)
            extra = {
                "backend": store.backend.type,
                "destination": {"persistentVolumeClaim": {"claimName": claim, "path": path}},
            }
            return b.backup_job(obj, store), extra

        status = self._run(obj, prepare)
        if status.get("jobName") and not status.get("destination"):
            # The Job was made but its first status write was lost (an operator restart):
            # retention needs to know where the files are.
            claim, path = b.dump_path(obj)
            status["destination"] = {"persistentVolumeClaim": {"claimName": claim, "path": path}}
        if status["phase"] in FINISHED:
            self.telemetry.record_run("backup", str(status["phase"]))
        return status

    def _record_success(
        self, namespace: str, obj: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        done = b.parse_time(status.get("completedAt"))
        if done is not None:
            store = str(obj["spec"]["memoryStore"]["name"])
            self.telemetry.record_backup_success(namespace, store, done.timestamp())

    # --- MemoryStoreRestore --------------------------------------------------------

    def reconcile_restore(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._locks[f"restore/{namespace}/{name}"]:
            obj = self.kube.get_object(b.RESTORE_PLURAL, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            status = self._restore_status(obj)
            self._write(b.RESTORE_PLURAL, obj, status)
            return status

    def _restore_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        previous = obj.get("status") or {}
        if previous.get("phase") in FINISHED:
            return dict(previous)
        spec, namespace = obj["spec"], obj["metadata"]["namespace"]

        def prepare() -> Prepared:
            extra: dict[str, Any] = {}
            source = spec["source"]
            if source.get("backup"):
                backup_name = str(source["backup"]["name"])
                backup = self.kube.get_object(b.BACKUP_PLURAL, namespace, backup_name)
                if backup is None:
                    raise Waiting("BackupNotFound", f"MemoryStoreBackup {backup_name!r} not found")
                bst = backup.get("status") or {}
                if bst.get("phase") == "Failed":
                    raise CannotRun("BackupFailed", f"MemoryStoreBackup {backup_name!r} failed")
                if bst.get("phase") != "Completed":
                    message = f"waiting for MemoryStoreBackup {backup_name!r} to complete"
                    raise Waiting("BackupNotCompleted", message)
                claim, path = b.dump_path(backup)
                if bst.get("backend"):
                    extra["sourceBackend"] = bst["backend"]
            else:
                pvc = source["persistentVolumeClaim"]
                claim, path = str(pvc["claimName"]), str(pvc["path"])
            store = self._ready_store(namespace, spec["memoryStore"]["name"])
            extra["backend"] = store.backend.type
            return b.restore_job(obj, store, claim, path), extra

        status = self._run(obj, prepare)
        if status["phase"] in FINISHED:
            self.telemetry.record_run("restore", str(status["phase"]))
        return status

    # --- MemoryStoreScheduledBackup ------------------------------------------------

    def reconcile_schedule(
        self, namespace: str, name: str, at: dt.datetime | None = None
    ) -> dict[str, Any] | None:
        with self._locks[f"schedule/{namespace}/{name}"]:
            obj = self.kube.get_object(b.SCHEDULE_PLURAL, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            status = self._schedule_status(obj, at or b.now())
            self._write(b.SCHEDULE_PLURAL, obj, status)
            return status

    def _schedule_status(self, obj: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
        meta, spec = obj["metadata"], obj["spec"]
        namespace, name = meta["namespace"], meta["name"]
        generation = int(meta.get("generation") or 0)
        previous = obj.get("status") or {}
        status: dict[str, Any] = {
            k: v for k, v in previous.items() if k not in ("nextScheduleTime", "phase")
        }
        status["observedGeneration"] = generation
        conds = list(previous.get("conditions") or [])

        def put(ctype: str, check: Check) -> None:
            nonlocal conds
            conds = set_condition(
                conds, ctype, check.status, check.reason, check.message, generation, b.fmt_time(at)
            )

        expression = str(spec["schedule"])
        if not b.valid_schedule(expression):
            put(b.SCHEDULED, Check(False, "InvalidSchedule", f"cannot parse {expression!r}"))
            return {**status, "phase": "Failed", "conditions": conds}

        if spec.get("suspend"):
            status["phase"] = "Suspended"
            put(b.SCHEDULED, Check(False, "Suspended", "spec.suspend is true"))
        else:
            status["phase"] = "Active"
            last = b.parse_time(previous.get("lastScheduleTime"))
            created = b.parse_time(meta.get("creationTimestamp")) or at
            due = b.due_time(expression, created, last, bool(spec.get("immediate")), at)
            if due is not None:
                backup = b.scheduled_backup(obj, due)
                self.kube.create_object(b.BACKUP_PLURAL, backup)
                status["lastScheduleTime"] = b.fmt_time(due)
                status["lastBackup"] = backup["metadata"]["name"]
                last = due
            status["nextScheduleTime"] = b.fmt_time(b.next_time(expression, max(at, last or at)))
            put(b.SCHEDULED, Check(True, "Active", f"schedule {expression!r} (UTC)"))

        mine = self.kube.list_objects(
            b.BACKUP_PLURAL, [], namespace=namespace, selector=f"{b.SCHEDULE_LABEL}={name}"
        )
        finished = sorted(
            (x for x in mine if (x.get("status") or {}).get("phase") in FINISHED),
            key=lambda x: str((x.get("status") or {}).get("completedAt") or ""),
        )
        succeeded = [x for x in finished if x["status"]["phase"] == "Completed"]
        if succeeded:
            newest = succeeded[-1]
            when = str(newest["status"].get("completedAt") or "")
            if when and when >= str(status.get("lastSuccessTime") or ""):
                status["lastSuccessTime"] = when
                status["lastSuccessfulBackup"] = newest["metadata"]["name"]
        if finished:
            newest = finished[-1]
            if newest["status"]["phase"] == "Completed":
                put(b.LAST_BACKUP_SUCCEEDED, Check(True, "Succeeded", newest["metadata"]["name"]))
            else:
                message = f"{newest['metadata']['name']}: " + next(
                    (
                        str(cond.get("message") or "")
                        for cond in newest["status"].get("conditions") or []
                        if cond.get("type") == b.COMPLETED
                    ),
                    "failed",
                )
                put(b.LAST_BACKUP_SUCCEEDED, Check(False, "Failed", message[:1000]))
        for old in b.to_prune(mine, int(spec.get("keep") or 1)):
            self._prune(old)
        status["backups"] = len(mine)
        status["conditions"] = conds
        return status

    def _prune(self, backup: Mapping[str, Any]) -> None:
        """Delete a backup with its files: a Job removes its directory, then the backup
        goes (and the garbage collector takes its Jobs)."""
        meta = backup["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if not (backup.get("status") or {}).get("destination"):
            # Never got a Job, so never wrote a file.
            self.kube.delete_object(b.BACKUP_PLURAL, namespace, name, uid)
            return
        job_name = b.delete_job_name(backup)
        job = self.kube.read_job(namespace, job_name)
        if job is None:
            body = self.kube.get_store(namespace, str(backup["spec"]["memoryStore"]["name"]))
            if body is None:
                log.warning(
                    "cannot delete the files of %s/%s: its MemoryStore is gone", namespace, name
                )
                return
            store = parse_spec(body["metadata"]["name"], namespace, body.get("spec") or {})
            self.kube.create_job(b.delete_job(backup, store))
            return
        outcome = b.job_outcome(job, [])
        if outcome.state == "Completed":
            self.kube.delete_object(b.BACKUP_PLURAL, namespace, name, uid)
        elif outcome.state == "Failed":
            log.warning("deleting the files of %s/%s failed: %s", namespace, name, outcome.message)

    # --- the periodic pass ---------------------------------------------------------

    def sweep(self) -> None:
        """Every schedule, and every backup and restore not finished yet (or finished, for
        the backup-age metric); each failure is logged and the others still run."""
        kube = self.kube
        for plural, handle in (
            (b.SCHEDULE_PLURAL, self.reconcile_schedule),
            (b.BACKUP_PLURAL, self.reconcile_backup),
            (b.RESTORE_PLURAL, self.reconcile_restore),
        ):
            try:
                items = kube.list_objects(plural, self.namespaces)
            except ApiException as exc:
                if exc.status == 404:
                    continue  # the CRD is not installed
                raise
            for obj in items:
                meta = obj["metadata"]
                try:
                    handle(meta["namespace"], meta["name"])
                except Exception:
                    log.exception("%s %s/%s failed", plural, meta["namespace"], meta["name"])
