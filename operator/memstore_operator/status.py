"""Pure status computation: observed facts -> the MemoryStore's ``status``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Condition = dict[str, Any]

READY = "Ready"
PROGRESSING = "Progressing"
BACKEND_REACHABLE = "BackendReachable"
SECRETS_RESOLVED = "SecretsResolved"
DEGRADED = "Degraded"


@dataclass(frozen=True)
class Check:
    """The outcome of one check, as a condition's status/reason/message."""

    ok: bool | None  # None: unknown / not checked
    reason: str
    message: str

    @property
    def status(self) -> str:
        return "Unknown" if self.ok is None else ("True" if self.ok else "False")


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[Condition]:
    """Return ``conditions`` with ``ctype`` set; ``lastTransitionTime`` only moves when the
    status changes."""
    old = next((cond for cond in conditions if cond.get("type") == ctype), None)
    changed = old is None or old.get("status") != status
    new: Condition = {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now if old is None or changed else old.get("lastTransitionTime", now),
    }
    if old is None:
        return [*(dict(cond) for cond in conditions), new]
    return [new if cond is old else dict(cond) for cond in conditions]


def deployment_progress(
    deployment: Mapping[str, Any] | None, desired: int
) -> tuple[Check, int, int]:
    """(Progressing check, replicas, readyReplicas) from a Deployment's status."""
    if deployment is None:
        return Check(True, "Creating", "the Deployment does not exist yet"), 0, 0
    meta = deployment.get("metadata") or {}
    st = deployment.get("status") or {}
    replicas = int(st.get("replicas") or 0)
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    if int(st.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return (
            Check(True, "RolloutPending", "the Deployment controller has not seen the change"),
            replicas,
            ready,
        )
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return (
                Check(False, "ProgressDeadlineExceeded", str(cond.get("message", ""))),
                replicas,
                ready,
            )
    if updated < desired or ready < desired or available < desired or replicas > desired:
        msg = f"{ready}/{desired} replicas ready, {updated} updated"
        return Check(True, "RollingOut", msg), replicas, ready
    return Check(False, "RolloutComplete", f"{ready}/{desired} replicas ready"), replicas, ready


def compute(
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: str,
    desired_replicas: int,
    selector: str,
    endpoint: str,
    config_hash: str | None,
    deployment: Mapping[str, Any] | None,
    secrets: Check,
    backend: Check,
    secondary: Check | None = None,
    invalid: str | None = None,
) -> dict[str, Any]:
    """The whole ``status`` object. ``invalid`` is the message of an invalid spec;
    ``secondary``: the check of the secondary backend, when the spec names one."""
    prev = dict(previous or {})
    conds: list[Condition] = list(prev.get("conditions") or [])
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "selector": selector,
        "endpoint": endpoint,
    }
    if config_hash is not None:
        status["configHash"] = config_hash

    def put(ctype: str, st: str, reason: str, message: str) -> None:
        nonlocal conds
        conds = set_condition(conds, ctype, st, reason, message, generation, now)

    if invalid is not None:
        put(READY, "False", "InvalidSpec", invalid)
        put(PROGRESSING, "False", "InvalidSpec", invalid)
        put(BACKEND_REACHABLE, "Unknown", "InvalidSpec", "not checked: the spec is invalid")
        status.update(phase="Failed", conditions=conds)
        status.update(replicas=int(prev.get("replicas") or 0))
        status.update(readyReplicas=int(prev.get("readyReplicas") or 0))
        return status

    put(SECRETS_RESOLVED, secrets.status, secrets.reason, secrets.message)
    put(BACKEND_REACHABLE, backend.status, backend.reason, backend.message)
    progressing, replicas, ready = deployment_progress(deployment, desired_replicas)
    if secrets.ok is False:
        progressing = Check(False, secrets.reason, secrets.message)
    put(PROGRESSING, progressing.status, progressing.reason, progressing.message)
    status.update(replicas=replicas, readyReplicas=ready)

    if secrets.ok is False:
        phase, ready_check = "Pending", Check(False, secrets.reason, secrets.message)
    elif progressing.ok is False and progressing.reason == "ProgressDeadlineExceeded":
        phase, ready_check = "Degraded", progressing
    elif progressing.ok:
        phase, ready_check = "Progressing", Check(False, progressing.reason, progressing.message)
    elif backend.ok is False and secondary is not None and secondary.ok:
        # The pods serve from the secondary (the service fails over on its own).
        phase = "Degraded"
        ready_check = Check(True, "SecondaryServing", "the primary backend is unreachable")
    elif backend.ok is False:
        phase, ready_check = "Degraded", Check(False, backend.reason, backend.message)
    elif secondary is not None and secondary.ok is False:
        phase = "Degraded"
        ready_check = Check(True, "Available", f"{ready}/{desired_replicas} replicas ready")
    else:
        phase = "Ready"
        ready_check = Check(True, "Available", f"{ready}/{desired_replicas} replicas ready")
    put(READY, ready_check.status, ready_check.reason, ready_check.message)
    if secondary is not None:
        degraded = degraded_check(backend, secondary)
        put(DEGRADED, degraded.status, degraded.reason, degraded.message)
    status.update(phase=phase, conditions=conds)
    return status


def degraded_check(primary: Check, secondary: Check) -> Check:
    """The ``Degraded`` condition of a store with a secondary backend, from what the
    operator can see itself: which backends answer. The replication lag is known to the
    store only (``/readyz`` ``replication``, ``memstore_replication_lag_seconds``)."""
    if primary.ok is False and secondary.ok:
        return Check(
            True,
            "SecondaryServing",
            f"the primary backend is unreachable ({primary.message}); the secondary serves",
        )
    if primary.ok is False:
        return Check(True, "BothUnreachable", "neither the primary nor the secondary answers")
    if secondary.ok is False:
        return Check(
            True,
            "SecondaryUnreachable",
            f"the secondary backend is unreachable ({secondary.message}): replication is "
            "paused and there is nothing to fail over to",
        )
    if primary.ok is None or secondary.ok is None:
        return Check(None, "NotChecked", "a backend could not be checked")
    return Check(
        False,
        "BothReachable",
        "both backends answer; the replication lag is in the store's /readyz and metrics",
    )
