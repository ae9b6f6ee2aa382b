"""Pure functions for backups and restores: resource -> Job, Job -> status, schedule ->
what is due and what retention deletes.

No I/O here (:mod:`memstore_operator.backup_reconcile` is the glue). A backup or a restore
is one Job of the store's own image running the service's CLI (``memstore export --all`` /
``memstore import``) against the store's Service, with a bearer token read from a Secret
into the environment (never the Job's spec, the status or a log). The Job reports what it
did in its container's termination message (JSON: ``sizeBytes``, ``namespaces``), which the
operator reads from the finished pod; a failed run's message is the end of its log
(``terminationMessagePolicy: FallbackToLogsOnError``), i.e. the CLI's error line.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from memstore_operator import constants as c
from memstore_operator.builders import endpoint
from memstore_operator.model import StoreSpec
from memstore_operator.status import Check, set_condition

Obj = dict[str, Any]

BACKUP_KIND = "MemoryStoreBackup"
BACKUP_PLURAL = "memorystorebackups"
SCHEDULE_KIND = "MemoryStoreScheduledBackup"
SCHEDULE_PLURAL = "memorystorescheduledbackups"
RESTORE_KIND = "MemoryStoreRestore"
RESTORE_PLURAL = "memorystorerestores"

#: The label naming the schedule a MemoryStoreBackup was created by.
SCHEDULE_LABEL = f"{c.GROUP}/scheduled-backup"
#: The label on every Job this module builds: which kind of run it is.
RUN_LABEL = f"{c.GROUP}/run"
COMPLETED = "Completed"
SCHEDULED = "Scheduled"
LAST_BACKUP_SUCCEEDED = "LastBackupSucceeded"
#: Where the Job mounts the claim.
MOUNT = "/backup"
#: The names a schedule gives its backups: NAME-<scheduled time, UTC, to the second>.
STAMP = "%Y%m%d%H%M%S"

# The programs the Jobs run, with the image's Python: the CLI does the work; these only
# prepare the directory and report the files' size in the termination message.
EXPORT_PROGRAM = """
import json, os, subprocess, sys
out = os.environ["MEMSTORE_DUMP_DIR"]
os.makedirs(out, exist_ok=True)
for name in os.listdir(out):  # a backup of the same name written before: replaced whole
    if name.endswith(".jsonl"):
        os.remove(os.path.join(out, name))
code = subprocess.call(["memstore", "export", "--all", "--output", out])
if code:
    sys.exit(code)
files = [os.path.join(out, n) for n in os.listdir(out) if n.endswith(".jsonl")]
report = {"sizeBytes": sum(os.path.getsize(f) for f in files), "namespaces": len(files)}
with open("/dev/termination-log", "w") as f:
    json.dump(report, f)
"""
IMPORT_PROGRAM = """
import json, os, subprocess, sys
src = os.environ["MEMSTORE_DUMP_DIR"]
if not os.path.isdir(src):
    sys.exit(f"no dump directory {src} on the claim")
files = [os.path.join(src, n) for n in os.listdir(src) if n.endswith(".jsonl")]
command = ["memstore", "import", "--input", src] + sys.argv[1:]
code = subprocess.call(command)
if code:
    sys.exit(code)
report = {"sizeBytes": sum(os.path.getsize(f) for f in files), "namespaces": len(files)}
with open("/dev/termination-log", "w") as f:
    json.dump(report, f)
"""


class NotRunnable(Exception):
    """The run cannot start as specified (e.g. no admin token to use): it is Failed."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fmt_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_name(run: Mapping[str, Any]) -> str:
    suffix = {BACKUP_KIND: "backup", RESTORE_KIND: "restore"}[str(run["kind"])]
    return f"{run['metadata']['name']}-{suffix}"


def delete_job_name(backup: Mapping[str, Any]) -> str:
    return f"{backup['metadata']['name']}-delete"


def dump_path(backup: Mapping[str, Any]) -> tuple[str, str]:
    """(claim, the dump's directory on it) of a MemoryStoreBackup: PATH/NAME."""
    pvc = backup["spec"]["destination"]["persistentVolumeClaim"]
    path = posixpath.join(pvc.get("path") or "", backup["metadata"]["name"])
    return str(pvc["claimName"]), path


def token_ref(run_spec: Mapping[str, Any], store: StoreSpec) -> tuple[str, str] | None:
    """(Secret, key) of the admin token the Job uses, or None when the store needs none.
    Raises NotRunnable when the store's tokens are the user's (only hashes) and the run
    names no token."""
    given = run_spec.get("tokenSecretRef")
    if not store.auth.enabled:
        return None
    if given:
        return str(given["name"]), str(given.get("key") or c.AUTH_TOKEN_KEY)
    if store.auth.secret_ref is not None:
        raise NotRunnable(
            f"MemoryStore {store.name!r} uses auth.secretRef (token hashes only): set "
            "spec.tokenSecretRef to a Secret key holding a token with the admin role"
        )
    return f"{store.name}{c.AUTH_SECRET_SUFFIX}", c.AUTH_TOKEN_KEY


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": c.API_VERSION,
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _job(
    *,
    owner: Mapping[str, Any],
    name: str,
    run: str,
    store: StoreSpec,
    command: list[str],
    env: list[Obj],
    claim: str,
    read_only: bool,
    timeout: int,
) -> Obj:
    labels = {
        c.LABEL_NAME: "memstore",
        c.LABEL_INSTANCE: store.name,
        c.LABEL_COMPONENT: run,  # never "server": the store's Service must not select it
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        RUN_LABEL: run,
    }
    container: Obj = {
        "name": run,
        "image": store.image,
        "imagePullPolicy": store.image_pull_policy,
        "command": command,
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": c.RUN_AS_USER,
            "runAsGroup": c.RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the image's HOME
            {"name": "backup", "mountPath": MOUNT, **({"readOnly": True} if read_only else {})},
        ],
    }
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": c.RUN_AS_USER,
            "runAsGroup": c.RUN_AS_USER,
            "fsGroup": c.RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "backup", "persistentVolumeClaim": {"claimName": claim}},
        ],
    }
    if store.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in store.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": store.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            # One attempt: a dump or an import that failed says why; the next scheduled
            # backup (or a new resource) is the retry.
            "backoffLimit": 0,
            "activeDeadlineSeconds": timeout,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _client_env(store: StoreSpec, token: tuple[str, str] | None, dump_dir: str) -> list[Obj]:
    env: list[Obj] = [
        {"name": "MEMSTORE_URL", "value": endpoint(store)},
        {"name": "MEMSTORE_DUMP_DIR", "value": dump_dir},
    ]
    if token is not None:
        secret, key = token
        env.append(
            {
                "name": "MEMSTORE_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }
        )
    return env


def backup_job(backup: Mapping[str, Any], store: StoreSpec) -> Obj:
    """The Job of a MemoryStoreBackup: ``memstore export --all`` into PATH/NAME on the claim."""
    claim, path = dump_path(backup)
    spec = backup["spec"]
    return _job(
        owner=backup,
        name=job_name(backup),
        run="backup",
        store=store,
        command=["python", "-c", EXPORT_PROGRAM],
        env=_client_env(store, token_ref(spec, store), posixpath.join(MOUNT, path)),
        claim=claim,
        read_only=False,
        timeout=int(spec.get("timeoutSeconds") or 3600),
    )


def restore_job(restore: Mapping[str, Any], store: StoreSpec, claim: str, path: str) -> Obj:
    """The Job of a MemoryStoreRestore: ``memstore import`` of the dump at ``path`` on the
    claim (mounted read-only) into ``store``."""
    spec = restore["spec"]
    args = ["--replace"] if spec.get("replace") else []
    return _job(
        owner=restore,
        name=job_name(restore),
        run="restore",
        store=store,
        command=["python", "-c", IMPORT_PROGRAM, *args],
        env=_client_env(store, token_ref(spec, store), posixpath.join(MOUNT, path)),
        claim=claim,
        read_only=True,
        timeout=int(spec.get("timeoutSeconds") or 3600),
    )


def delete_job(backup: Mapping[str, Any], store: StoreSpec) -> Obj:
    """The Job that removes a backup's files (retention), owned by the backup: deleting
    the backup afterwards lets the garbage collector remove both Jobs."""
    claim, path = dump_path(backup)
    job = _job(
        owner=backup,
        name=delete_job_name(backup),
        run="backup-delete",
        store=store,
        command=["rm", "-rf", "--", posixpath.join(MOUNT, path)],
        env=[],
        claim=claim,
        read_only=False,
        timeout=600,
    )
    return job


# --- Job -> status ------------------------------------------------------------------


@dataclass(frozen=True)
class JobOutcome:
    """What a Job's status (and its pod's termination message) says."""

    state: str  # Running, Completed or Failed
    started: dt.datetime | None
    finished: dt.datetime | None
    message: str
    report: Mapping[str, Any]


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    st = job.get("status") or {}
    started = parse_time(st.get("startTime"))
    state, finished, message = "Running", None, ""
    for cond in st.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            state, finished = "Completed", parse_time(st.get("completionTime"))
            finished = finished or parse_time(cond.get("lastTransitionTime"))
        elif cond.get("type") == "Failed":
            state, finished = "Failed", parse_time(cond.get("lastTransitionTime"))
            message = str(cond.get("message") or cond.get("reason") or "the Job failed")
    report: dict[str, Any] = {}
    terminated = _terminated(pods)
    if terminated is not None:
        text = str(terminated.get("message") or "").strip()
        if state == "Completed":
            try:
                loaded = json.loads(text)
                report = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                report = {}
        elif state == "Failed" and text:
            message = f"{message}: {text}" if message else text
    return JobOutcome(state, started, finished, message[-2000:], report)


def _terminated(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The terminated state of the newest pod's container, if it ended."""
    newest = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
    for pod in reversed(newest):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                return dict(term)
    return None


def run_status(
    previous: Mapping[str, Any],
    generation: int,
    phase: str,
    check: Check,
    at: dt.datetime,
    **fields: Any,
) -> Obj:
    """The status of a backup or restore: ``phase``, the Completed condition, ``fields``."""
    conds = set_condition(
        previous.get("conditions") or [],
        COMPLETED,
        check.status,
        check.reason,
        check.message,
        generation,
        fmt_time(at),
    )
    status: Obj = {**dict(previous), "observedGeneration": generation, "phase": phase}
    status.update({k: v for k, v in fields.items() if v is not None})
    status["conditions"] = conds
    return status


def outcome_fields(outcome: JobOutcome) -> Obj:
    fields: Obj = {}
    if outcome.started is not None:
        fields["startedAt"] = fmt_time(outcome.started)
    if outcome.finished is not None:
        fields["completedAt"] = fmt_time(outcome.finished)
        if outcome.started is not None:
            fields["durationSeconds"] = (outcome.finished - outcome.started).total_seconds()
    for key in ("sizeBytes", "namespaces"):
        value = outcome.report.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            fields[key] = value
    return fields


# --- schedules ----------------------------------------------------------------------


def valid_schedule(expression: str) -> bool:
    return bool(croniter.is_valid(expression))


def due_time(
    expression: str,
    created: dt.datetime,
    last: dt.datetime | None,
    immediate: bool,
    at: dt.datetime,
) -> dt.datetime | None:
    """The scheduled time of the backup to create now, or None. Runs missed while the
    operator was away collapse into the latest one (as a CronJob's would)."""
    if last is None and immediate:
        return at.replace(microsecond=0)
    latest: dt.datetime = croniter(expression, at).get_prev(dt.datetime)
    since = last or created
    return latest if latest > since else None


def next_time(expression: str, after: dt.datetime) -> dt.datetime:
    got: dt.datetime = croniter(expression, after).get_next(dt.datetime)
    return got


def scheduled_backup(schedule: Mapping[str, Any], at: dt.datetime) -> Obj:
    """The MemoryStoreBackup a schedule creates for its run at ``at``. Its name comes from
    the scheduled time, so a retried creation (operator restarted) finds it existing."""
    meta, spec = schedule["metadata"], schedule["spec"]
    backup_spec: Obj = {
        "memoryStore": dict(spec["memoryStore"]),
        "destination": json.loads(json.dumps(spec["destination"])),
        "timeoutSeconds": spec.get("timeoutSeconds", 3600),
    }
    if spec.get("tokenSecretRef"):
        backup_spec["tokenSecretRef"] = dict(spec["tokenSecretRef"])
    return {
        "apiVersion": c.API_VERSION,
        "kind": BACKUP_KIND,
        "metadata": {
            "name": f"{meta['name']}-{at.astimezone(dt.UTC).strftime(STAMP)}",
            "namespace": meta["namespace"],
            "labels": {
                SCHEDULE_LABEL: meta["name"],
                c.LABEL_NAME: "memstore",
                c.LABEL_INSTANCE: str(spec["memoryStore"]["name"]),
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
            },
        },
        "spec": backup_spec,
    }


def _created(obj: Mapping[str, Any]) -> str:
    # The name's stamp orders a schedule's backups even within one second of creation.
    meta = obj["metadata"]
    return f"{meta.get('creationTimestamp') or ''} {meta['name']}"


def to_prune(backups: Sequence[Mapping[str, Any]], keep: int) -> list[Mapping[str, Any]]:
    """The backups retention deletes: Completed ones beyond the newest ``keep``, and Failed
    ones older than the oldest kept (running ones are never touched)."""
    ordered = sorted(backups, key=_created, reverse=True)
    completed = [b for b in ordered if (b.get("status") or {}).get("phase") == "Completed"]
    if len(completed) <= keep:
        kept_from = _created(completed[-1]) if len(completed) == keep and completed else ""
    else:
        kept_from = _created(completed[keep - 1])
    dropped = completed[keep:]
    if kept_from:
        dropped += [
            b
            for b in ordered
            if (b.get("status") or {}).get("phase") == "Failed" and _created(b) < kept_from
        ]
    return dropped
