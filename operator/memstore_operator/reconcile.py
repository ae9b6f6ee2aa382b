"""One reconcile pass for one MemoryStore: the glue between the pure builders, the API
(:mod:`memstore_operator.kube`) and the status. :class:`Reconciler` is used by the kopf
handlers and by the periodic resync loop; one instance lives in the operator's memo."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from memstore_operator import backendcheck, builders
from memstore_operator import status as st
from memstore_operator.kube import Kube
from memstore_operator.model import InvalidSpec, StoreSpec, parse_spec
from memstore_operator.telemetry import Telemetry, step

log = logging.getLogger(__name__)


class SecretsMissing(Exception):
    """A referenced Secret or key does not exist yet (retry later)."""


@dataclass(frozen=True)
class Outcome:
    status: dict[str, Any]
    invalid: str | None = None
    missing: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_secrets(kube: Kube, spec: StoreSpec) -> tuple[st.Check, dict[str, str], dict[str, str]]:
    """(check, versions by Secret name, values by "name/key")."""
    versions: dict[str, str] = {}
    values: dict[str, str] = {}
    missing: list[str] = []
    for ref in spec.secret_refs:
        got = kube.read_secret(spec.namespace, ref.name)
        if got is None:
            missing.append(f"Secret {ref.name!r} not found")
            continue
        versions[ref.name], data = got
        if ref.key not in data:
            missing.append(f"Secret {ref.name!r} has no key {ref.key!r}")
            continue
        values[f"{ref.name}/{ref.key}"] = data[ref.key]
    if missing:
        return st.Check(False, "SecretNotFound", "; ".join(missing)), versions, values
    if not spec.secret_refs:
        return st.Check(True, "NoSecrets", "no Secret is referenced"), versions, values
    return st.Check(True, "Resolved", "every referenced Secret and key exists"), versions, values


def _apply(kube: Kube, obj: Mapping[str, Any]) -> None:
    with step("apply " + str(obj["kind"]), **{"k8s.object.name": obj["metadata"]["name"]}):
        kube.apply(obj)


def ensure_auth_secret(kube: Kube, spec: StoreSpec, body: Mapping[str, Any]) -> None:
    """Generate ``<name>-auth`` once when auth is on and no Secret was given. Its name is
    fixed, so a crash between two attempts cannot leave two of them."""
    if not spec.auth_generated:
        return
    name = builders.auth_secret_name(spec)
    found = kube.secret_owners(spec.namespace, name)
    if found is not None:
        secret_uid, owners = found
        if not owners or body["metadata"]["uid"] in owners:
            return  # ours, or one the user made under that name: kept as it is
        # Left over from a deleted MemoryStore of the same name, about to be garbage
        # collected: replace it now rather than hand its token to the new store.
        kube.delete_secret(spec.namespace, name, secret_uid)
    with step("create Secret", **{"k8s.object.name": name}):
        kube.create_secret_if_absent(builders.auth_secret(spec, builders.new_token(), body))


def apply_children(kube: Kube, spec: StoreSpec, body: Mapping[str, Any], cfg_hash: str) -> None:
    uid = body["metadata"]["uid"]
    _apply(kube, builders.configmap(spec, body))
    claim = builders.pvc(spec, body)
    if claim is not None:
        _apply(kube, claim)
    _apply(kube, builders.service(spec, body))
    _apply(kube, builders.deployment(spec, cfg_hash, body))
    budget = builders.pdb(spec, body)
    if budget is not None:
        _apply(kube, budget)
    else:
        kube.delete_owned("policy/v1", "PodDisruptionBudget", spec.namespace, spec.name, uid)
    monitor = builders.service_monitor(spec, body)
    if monitor is not None:
        if kube.has_kind(monitor["apiVersion"], monitor["kind"]):
            _apply(kube, monitor)
    else:
        kube.delete_owned(
            "monitoring.coreos.com/v1", "ServiceMonitor", spec.namespace, spec.name, uid
        )


def _body(exc: DynamicApiError) -> str:
    raw: Any = exc.body
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw or "")


def _api_reason(exc: DynamicApiError) -> str:
    try:
        payload = json.loads(_body(exc))
    except (TypeError, ValueError):
        return f"HTTP {exc.status}"
    return str(payload.get("message") or f"HTTP {exc.status}")[:1000]


def _invalid(kube: Kube, body: Mapping[str, Any], message: str) -> Outcome:
    meta = body["metadata"]
    status = st.compute(
        previous=body.get("status") or {},
        generation=int(meta.get("generation") or 0),
        now=_now(),
        desired_replicas=0,
        selector="",
        endpoint="",
        config_hash=None,
        deployment=None,
        secrets=st.Check(None, "InvalidSpec", ""),
        backend=st.Check(None, "InvalidSpec", ""),
        invalid=message,
    )
    kube.patch_status(meta["namespace"], meta["name"], status)
    return Outcome(status, invalid=message)


def _error_message(exc: Exception) -> str:
    if isinstance(exc, DynamicApiError):
        return f"the API server answered {exc.status}: {_api_reason(exc)}"
    if isinstance(exc, ApiException):
        raw: Any = exc.body
        try:
            payload = json.loads(raw.decode() if isinstance(raw, bytes) else (raw or ""))
            detail = str(payload.get("message") or exc.reason)
        except (TypeError, ValueError):
            detail = str(exc.reason)
        return f"the API server answered {exc.status}: {detail}"[:1000]
    return f"unexpected {type(exc).__name__}; see the operator log"


def report_error(kube: Kube, namespace: str, name: str, exc: Exception) -> None:
    """Best effort: put an unexpected failure (e.g. a permission the operator lacks) on
    the Ready condition, so it shows on the resource and not only in the operator log.
    API messages name objects and verbs, never Secret data."""
    try:
        body = kube.get_store(namespace, name)
        if body is None:
            return
        previous = body.get("status") or {}
        conds = st.set_condition(
            previous.get("conditions") or [],
            st.READY,
            "False",
            "ReconcileError",
            _error_message(exc),
            int(body["metadata"].get("generation") or 0),
            _now(),
        )
        kube.patch_status(namespace, name, {"conditions": conds})
    except Exception:
        log.warning("could not report a reconcile error on %s/%s", namespace, name)


@dataclass
class Reconciler:
    """Reconciles MemoryStores through ``kube``, one pass at a time per store."""

    kube: Kube
    telemetry: Telemetry
    backend_timeout: float
    # The kopf handlers and the resync loop run in different threads: one lock per store.
    _locks: defaultdict[str, threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock)
    )

    def reconcile(self, body: Mapping[str, Any], trigger: str = "resync") -> Outcome:
        """Bring the children in line with ``body`` (a MemoryStore) and write its status.

        Never raises for an invalid spec or a missing Secret: the Outcome says so, and
        the caller (a kopf handler) turns it into PermanentError / TemporaryError. Each
        pass is one span (``reconcile MemoryStore``) and is counted and timed in the
        metrics.
        """
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        tel = self.telemetry
        with tel.reconcile_span(trigger, namespace, name) as span:
            try:
                with self._locks[f"{namespace}/{name}"]:
                    outcome = self._reconcile(namespace, name)
            except Exception as exc:
                tel.record_result(trigger, "error", type(exc).__name__)
                report_error(self.kube, namespace, name, exc)
                raise
            phase = str(outcome.status.get("phase", ""))
            span.set_attribute("memstore.phase", phase)
            if outcome.invalid is not None:
                tel.record_result(trigger, "invalid", "InvalidSpec")
            elif outcome.missing is not None:
                tel.record_result(trigger, "pending")
            else:
                tel.record_result(trigger, "ok")
            return outcome

    def _reconcile(self, namespace: str, name: str) -> Outcome:
        kube = self.kube
        # Act on the latest version, not on the one this pass was started with: the
        # kopf handlers and the resync loop may hold bodies of different ages, and an
        # older one would briefly roll the pods back to an older config.
        body = kube.get_store(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return Outcome({}, missing=None)
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        previous = body.get("status") or {}
        try:
            spec = parse_spec(name, namespace, body.get("spec") or {})
        except InvalidSpec as exc:
            return _invalid(kube, body, str(exc))

        ensure_auth_secret(kube, spec, body)
        secrets, versions, values = resolve_secrets(kube, spec)
        cfg_hash = None
        secondary: st.Check | None = None
        if secrets.ok:
            cfg_hash = builders.config_hash(spec, versions)
            try:
                apply_children(kube, spec, body, cfg_hash)
            except DynamicApiError as exc:
                # A child of the wrong shape: 400/422, or 500 "failed to create typed patch
                # object" from server-side apply (kube-apiserver 1.30).
                typed = exc.status == 500 and "typed patch object" in _body(exc)
                if exc.status not in (400, 422) and not typed:
                    raise
                # The spec passed the CRD schema but a child was refused (e.g. an
                # affinity that is not a valid core/v1 Affinity): retrying will not help.
                message = f"the API server refused a child object: {_api_reason(exc)}"
                return _invalid(kube, body, message)
            with step("check backend", **{"memstore.backend": spec.backend.type}):
                backend = backendcheck.check_backend(spec, values, self.backend_timeout)
            self.telemetry.record_backend_check(spec.backend.type, backend.ok)
            if spec.secondary_backend is not None:
                with step("check secondary backend"):
                    secondary = backendcheck.check_backend(
                        spec, values, self.backend_timeout, secondary=True
                    )
        else:
            backend = st.Check(None, "SecretNotFound", "not checked: a Secret is missing")
            if spec.secondary_backend is not None:
                secondary = backend
        status = st.compute(
            previous=previous,
            generation=generation,
            now=_now(),
            desired_replicas=spec.replicas,
            selector=builders.selector_string(spec),
            endpoint=builders.endpoint(spec),
            config_hash=cfg_hash or previous.get("configHash"),
            deployment=kube.read_deployment(namespace, name),
            secrets=secrets,
            backend=backend,
            secondary=secondary,
        )
        with step("patch status", **{"memstore.phase": str(status.get("phase"))}):
            kube.patch_status(namespace, name, status)
        return Outcome(status, missing=None if secrets.ok else secrets.message)
