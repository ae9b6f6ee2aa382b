"""The one module that talks to the Kubernetes API (synchronous ``kubernetes`` client).

Children are written with server-side apply (field manager ``memstore-operator``, forced),
so a repeated reconcile with the same desired state changes nothing, and fields other
managers own (an HPA's replicas aside, e.g. annotations added by other tools) survive.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client
from kubernetes import config as _config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient as _DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from memstore_operator import constants as c

log = logging.getLogger(__name__)

T = TypeVar("T")

KIND_CACHE_SECONDS = 10.0

# Parts of the client are untyped; they are used through Any.
config: Any = _config
DynamicClient: Any = _DynamicClient


def load_config() -> None:
    """In-cluster config when running in a pod, else ``$KUBECONFIG`` / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def unless_absent(call: Callable[[], T]) -> T | None:
    """``call()``, or None when the API server answers 404 (the object does not exist)."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` already holds every field of ``desired`` (maps: a subset, with
    the server's defaults and others' fields allowed; lists: same length, item by item)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            contains(live[k], v) if k in live else v in ({}, [], None) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._dyn: Any = None
        self._kinds: dict[str, tuple[float, bool]] = {}

    @property
    def dyn(self) -> Any:
        if self._dyn is None:
            self._dyn = DynamicClient(self.api)
        return self._dyn

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. ServiceMonitor, if its CRD exists).
        One GET of the group version, remembered for :data:`KIND_CACHE_SECONDS` (the
        dynamic client's discovery would re-read everything on every miss)."""
        key = f"{api_version}/{kind}"
        now = time.monotonic()
        hit = self._kinds.get(key)
        if hit is not None and now - hit[0] < KIND_CACHE_SECONDS:
            return hit[1]
        group, _, version = api_version.rpartition("/")
        try:
            got: Any = (
                self.custom.get_api_resources(group, version)
                if group
                else self.core.get_api_resources()
            )
            found = any(r.kind == kind for r in got.resources or [])
        except ApiException as exc:
            if exc.status != 404:
                raise
            found = False
        self._kinds[key] = (now, found)
        return found

    def apply(self, obj: Mapping[str, Any]) -> bool:
        """Server-side apply ``obj`` unless the live object already has every field of it
        (then nothing is sent: an apply of an unchanged Deployment still moves its
        managedFields timestamp and resourceVersion). True when an apply was sent."""
        res = self._resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            live = res.get(name=meta["name"], namespace=meta.get("namespace")).to_dict()
        except NotFoundError:
            live = None
        if live is not None and contains(live, obj):
            return False
        self.dyn.server_side_apply(
            res,
            body=dict(obj),
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=c.FIELD_MANAGER,
            force_conflicts=True,
        )
        return True

    def delete_owned(
        self, api_version: str, kind: str, namespace: str, name: str, uid: str
    ) -> bool:
        """Delete the object if it exists and is owned by the MemoryStore ``uid``."""
        if not self.has_kind(api_version, kind):
            return False
        res = self._resource(api_version, kind)
        try:
            current = res.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return False
        owners = current.get("metadata", {}).get("ownerReferences") or []
        if not any(o.get("uid") == uid for o in owners):
            return False
        try:
            res.delete(name=name, namespace=namespace)
        except NotFoundError:
            return False
        return True

    def create_secret_if_absent(self, obj: Mapping[str, Any]) -> bool:
        """Create the Secret unless one of that name exists (then leave it alone: a
        generated token must not change). True when this call created it."""
        meta = obj["metadata"]
        body: Any = dict(obj)
        try:
            self.core.create_namespaced_secret(meta["namespace"], body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def secret_owners(self, namespace: str, name: str) -> tuple[str, list[str]] | None:
        """(the Secret's uid, the uids of its owners), or None when it does not exist."""
        sec = unless_absent(lambda: self.core.read_namespaced_secret(name, namespace))
        if sec is None:
            return None
        meta: Any = sec.metadata
        return str(meta.uid), [str(o.uid) for o in meta.owner_references or []]

    def delete_secret(self, namespace: str, name: str, uid: str) -> None:
        """Delete the Secret if it still is the object ``uid`` (a precondition)."""
        body: Any = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            self.core.delete_namespaced_secret(name, namespace, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def read_secret(self, namespace: str, name: str) -> tuple[str, dict[str, str]] | None:
        """(resourceVersion, decoded data) or None when the Secret does not exist."""
        sec = unless_absent(lambda: self.core.read_namespaced_secret(name, namespace))
        if sec is None:
            return None
        data = {
            k: base64.b64decode(v).decode("utf-8", errors="replace")
            for k, v in (sec.data or {}).items()
        }
        meta: Any = sec.metadata
        return str(meta.resource_version), data

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        dep = unless_absent(lambda: self.apps.read_namespaced_deployment(name, namespace))
        if dep is None:
            return None
        api: Any = self.api
        result: dict[str, Any] = api.sanitize_for_serialization(dep)
        return result

    def get_store(self, namespace: str, name: str) -> dict[str, Any] | None:
        out: Any = unless_absent(
            lambda: self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name
            )
        )
        return None if out is None else dict(out)

    def list_stores(self, namespaces: list[str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if not namespaces:
            out: Any = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL)
            items.extend(out.get("items", []))
        for ns in namespaces:
            got: Any = self.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL)
            items.extend(got.get("items", []))
        return items

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        # A store deleted meanwhile has no status left to write: 404 is fine.
        unless_absent(
            lambda: self.custom.patch_namespaced_custom_object_status(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": dict(status)}
            )
        )

    # --- backups and restores: their resources, Jobs and the Jobs' pods -------------

    def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A MemoryStoreBackup / ...ScheduledBackup / ...Restore (any plural of the group)."""
        out: Any = unless_absent(
            lambda: self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, plural, name
            )
        )
        return None if out is None else dict(out)

    def list_objects(
        self, plural: str, namespaces: list[str], namespace: str | None = None, selector: str = ""
    ) -> list[dict[str, Any]]:
        """Objects of ``plural`` in ``namespace``, else in ``namespaces`` (empty: all)."""
        watched = [namespace] if namespace is not None else namespaces
        items: list[dict[str, Any]] = []
        if not watched:
            out: Any = self.custom.list_cluster_custom_object(
                c.GROUP, c.VERSION, plural, label_selector=selector
            )
            items.extend(out.get("items", []))
        for ns in watched:
            got: Any = self.custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, ns, plural, label_selector=selector
            )
            items.extend(got.get("items", []))
        return items

    def create_object(self, plural: str, obj: Mapping[str, Any]) -> bool:
        """Create it; False when one of that name exists already."""
        body: Any = dict(obj)
        try:
            self.custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, obj["metadata"]["namespace"], plural, body
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete_object(self, plural: str, namespace: str, name: str, uid: str) -> None:
        """Delete it if it still is the object ``uid``; its Jobs go with it (background)."""
        body: Any = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
        )
        try:
            self.custom.delete_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, plural, name, body=body
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def patch_object_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        unless_absent(
            lambda: self.custom.patch_namespaced_custom_object_status(
                c.GROUP, c.VERSION, namespace, plural, name, {"status": dict(status)}
            )
        )

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = unless_absent(lambda: self.batch.read_namespaced_job(name, namespace))
        if job is None:
            return None
        api: Any = self.api
        result: dict[str, Any] = api.sanitize_for_serialization(job)
        return result

    def create_job(self, obj: Mapping[str, Any]) -> bool:
        """Create the Job; False when one of that name exists already."""
        body: Any = dict(obj)
        try:
            self.batch.create_namespaced_job(obj["metadata"]["namespace"], body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        got = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
        api: Any = self.api
        items: list[dict[str, Any]] = api.sanitize_for_serialization(got)["items"]
        return items
