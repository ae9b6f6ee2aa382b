"""kopf handlers: thin wrappers around :func:`memstore_operator.reconcile.reconcile`.

create/update/resume run a reconcile and turn its outcome into kopf's errors:
``PermanentError`` for an invalid spec (with a Warning Event and a status condition),
``TemporaryError`` while a referenced Secret is missing. A periodic resync (a plain
asyncio task, not a kopf timer, so no finalizer is put on the resources) re-runs the same
reconcile to follow Deployment readiness and backend reachability and to repair drift.
Deletion is left to ownerReferences and the garbage collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import kopf

from memstore_operator import constants as c
from memstore_operator import telemetry
from memstore_operator.kube import Kube, load_config
from memstore_operator.reconcile import reconcile

log = logging.getLogger(__name__)

_state: dict[str, Any] = {}


def namespaces_from_env() -> list[str]:
    raw = os.environ.get("MEMSTORE_OPERATOR_NAMESPACES", "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


def _kube() -> Kube:
    kube = _state.get("kube")
    if kube is None:
        load_config()
        kube = Kube()
        _state["kube"] = kube
    assert isinstance(kube, Kube)
    return kube


async def _resync_loop(interval: float, namespaces: list[str]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            kube = _kube()
            stores = await asyncio.to_thread(kube.list_stores, namespaces)
            phases: list[str] = []
            for body in stores:
                if body.get("metadata", {}).get("deletionTimestamp"):
                    continue
                try:
                    outcome = await asyncio.to_thread(
                        reconcile, kube, body, _backend_timeout(), "resync"
                    )
                    phases.append(str(outcome.status.get("phase", "")))
                except Exception:
                    log.exception(
                        "resync of %s/%s failed",
                        body["metadata"].get("namespace"),
                        body["metadata"].get("name"),
                    )
            telemetry.record_phases(phases)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("resync pass failed")


def _backend_timeout() -> float:
    return _float_env("MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS", 3.0)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = c.ANNOTATION_PREFIX
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{prefix}/kopf-finalizer"
    settings.posting.level = logging.WARNING
    # A watch that goes silent is restarted by the client and server timeouts.
    settings.watching.server_timeout = int(_float_env("MEMSTORE_OPERATOR_WATCH_TIMEOUT", 300))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
    if "metrics_port" not in _state:
        _state["metrics_port"] = telemetry.serve_metrics()
    telemetry.setup_tracing()
    interval = _float_env("MEMSTORE_OPERATOR_RESYNC_SECONDS", 30.0)
    _state["resync"] = asyncio.create_task(_resync_loop(interval, namespaces_from_env()))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    task = _state.pop("resync", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.to_thread(telemetry.shutdown_tracing)


@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL)
def reconcile_store(body: kopf.Body, reason: str = "resume", **_: Any) -> None:
    trigger = str(reason) if str(reason) in telemetry.TRIGGERS else "resume"
    outcome = reconcile(_kube(), body, _backend_timeout(), trigger)
    if outcome.invalid is not None:
        kopf.warn(body, reason="InvalidSpec", message=outcome.invalid)
        raise kopf.PermanentError(f"invalid spec: {outcome.invalid}")
    if outcome.missing is not None:
        kopf.warn(body, reason="SecretNotFound", message=outcome.missing)
        delay = _float_env("MEMSTORE_OPERATOR_RETRY_SECONDS", 10.0)
        raise kopf.TemporaryError(outcome.missing, delay=delay)
