"""One reconcile pass for one MemoryStore: the glue between the pure builders, the API
(:mod:`memstore_operator.kube`) and the status. Used by the kopf handlers and by the
periodic resync loop."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError

from memstore_operator import backendcheck, builders
from memstore_operator import status as st
from memstore_operator.kube import Kube
from memstore_operator.model import InvalidSpec, StoreSpec, parse_spec

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


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


def apply_children(kube: Kube, spec: StoreSpec, body: Mapping[str, Any], cfg_hash: str) -> None:
    uid = body["metadata"]["uid"]
    kube.apply(builders.configmap(spec, body))
    claim = builders.pvc(spec, body)
    if claim is not None:
        kube.apply(claim)
    kube.apply(builders.service(spec, body))
    kube.apply(builders.deployment(spec, cfg_hash, body))
    budget = builders.pdb(spec, body)
    if budget is not None:
        kube.apply(budget)
    else:
        kube.delete_owned("policy/v1", "PodDisruptionBudget", spec.namespace, spec.name, uid)
    monitor = builders.service_monitor(spec, body)
    if monitor is not None:
        if kube.has_kind(monitor["apiVersion"], monitor["kind"]):
            kube.apply(monitor)
    else:
        kube.delete_owned(
            "monitoring.coreos.com/v1", "ServiceMonitor", spec.namespace, spec.name, uid
        )


def _api_reason(exc: DynamicApiError) -> str:
    try:
        payload = json.loads(exc.body or "")
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


def reconcile(kube: Kube, body: Mapping[str, Any], timeout: float = 3.0) -> Outcome:
    """Bring the children in line with ``body`` (a MemoryStore) and write its status.

    Never raises for an invalid spec or a missing Secret: the Outcome says so, and the
    caller (a kopf handler) turns it into PermanentError / TemporaryError.
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    generation = int(meta.get("generation") or 0)
    previous = body.get("status") or {}
    with _locks[f"{namespace}/{name}"]:
        try:
            spec = parse_spec(name, namespace, body.get("spec") or {})
        except InvalidSpec as exc:
            return _invalid(kube, body, str(exc))

        secrets, versions, values = resolve_secrets(kube, spec)
        cfg_hash = None
        if secrets.ok:
            cfg_hash = builders.config_hash(spec, versions)
            try:
                apply_children(kube, spec, body, cfg_hash)
            except DynamicApiError as exc:
                if exc.status not in (400, 422):
                    raise
                # The spec passed the CRD schema but a child was refused (e.g. an
                # affinity that is not a valid core/v1 Affinity): retrying will not help.
                message = f"the API server refused a child object: {_api_reason(exc)}"
                return _invalid(kube, body, message)
            backend = backendcheck.check_backend(spec, values, timeout)
        else:
            backend = st.Check(None, "SecretNotFound", "not checked: a Secret is missing")
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
        )
        kube.patch_status(namespace, name, status)
        return Outcome(status, missing=None if secrets.ok else secrets.message)
