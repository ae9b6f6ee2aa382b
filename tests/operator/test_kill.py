"""The operator SIGKILLed in the middle of reconciling, and started again, converges with
no duplicate children (issue 5), also over many create/update/delete cycles (issue 9).

The operator runs with a pause before every write to the API server
(``tests/operator/slow_writes.py``), so a kill lands between two writes (a half-done
reconcile) instead of mostly between reconciles.
"""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import pytest

from tests.operator.conftest import Cluster, OperatorProcess, store_selector
from tests.servers.kube import KubeAPI
from tests.support.waiting import wait_for

CHILDREN = ("ConfigMap", "Secret", "Service", "Deployment", "PodDisruptionBudget")
HASH = "memory.datamcp.io/config-hash"


def token_of(c: Cluster, name: str) -> str | None:
    """The generated token of the live store ``name`` (not of a deleted namesake)."""
    sec = c.obj("Secret", f"{name}-auth")
    if sec is None:
        return None
    owners = [o["uid"] for o in sec["metadata"].get("ownerReferences") or []]
    if owners != [c.store(name)["metadata"]["uid"]]:
        return None
    return base64.b64decode(sec["data"]["token"]).decode()


def converged(c: Cluster, name: str, spec: dict[str, Any]) -> bool:
    """Status and children match the current spec, and there is exactly one of each."""
    store = c.store(name)
    st = store.get("status") or {}
    if st.get("observedGeneration") != store["metadata"]["generation"]:
        return False
    dep = c.obj("Deployment", name)
    cm = c.obj("ConfigMap", f"{name}-config")
    if dep is None or cm is None:
        return False
    if dep["spec"]["template"]["metadata"]["annotations"][HASH] != st.get("configHash"):
        return False
    if dep["spec"]["replicas"] != spec.get("replicas", 1):
        return False
    ttl = spec.get("cache", {}).get("ttlSeconds", 30)
    if cm["data"]["MEMSTORE_CACHE_TTL_SECONDS"] != str(ttl):
        return False
    uid = store["metadata"]["uid"]
    sel = store_selector(name)
    for kind in CHILDREN:
        items = c.listing(kind, sel)
        if len(items) != 1:
            return False
        owners = items[0]["metadata"].get("ownerReferences") or []
        if [o["uid"] for o in owners] != [uid]:
            return False
    # ReplicaSets all belong to the one live Deployment (none left from an earlier one).
    dep_uid = dep["metadata"]["uid"]
    for rs in c.listing("ReplicaSet", sel):
        if [o["uid"] for o in rs["metadata"].get("ownerReferences") or []] != [dep_uid]:
            return False
    return True


def gone(c: Cluster, name: str) -> bool:
    sel = store_selector(name)
    return all(c.listing(kind, sel) == [] for kind in (*CHILDREN, "ReplicaSet"))


def test_killed_mid_reconcile_converges_without_duplicates(
    operator_proc: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    op = operator_proc
    op.stop()
    op.start({}, write_delay=1.5)
    spec = {"backend": {"type": "embedded", "embedded": {"storage": "emptyDir"}}}
    c.apply("half", spec)
    # The auth Secret and the ConfigMap are written first; kill before the Deployment.
    wait_for(lambda: c.obj("ConfigMap", "half-config"), what="the ConfigMap")
    op.kill()
    token = token_of(c, "half")
    assert token is not None
    assert c.obj("Deployment", "half") is None, "the kill did not land mid-reconcile"
    assert (c.store("half").get("status") or {}).get("observedGeneration") is None

    op.start({})
    wait_for(lambda: converged(c, "half", spec), what="convergence after the restart")
    assert token_of(c, "half") == token  # the generated Secret was kept, not replaced
    assert len(c.listing("ReplicaSet", store_selector("half"))) == 1
    op.stop()


@pytest.mark.slow
def test_random_kills_over_create_update_delete_cycles(
    operator_proc: OperatorProcess,
    kube_api: KubeAPI,
    kube_namespace: str,
    redis_factory: Any,
) -> None:
    c = Cluster(kube_api, kube_namespace)
    op = operator_proc
    redis = redis_factory()
    rng = random.Random(20261124)
    delay = 0.2
    op.stop()
    op.start({}, write_delay=delay, keep_standby=True)
    names = ("k0", "k1", "k2")
    live: dict[str, dict[str, Any]] = {}
    tokens: dict[str, str] = {}
    cycles = 24
    mid_reconcile_kills = 0
    counts = {"create": 0, "update": 0, "delete": 0}
    started = time.monotonic()
    for cycle in range(cycles):
        name = names[cycle % len(names)]
        action = "create" if name not in live else rng.choice(("update", "update", "delete"))
        counts[action] += 1
        if action == "delete":
            c.kubectl("delete", f"ms/{name}", "--wait=false")
            del live[name]
            tokens.pop(name, None)
        else:
            if rng.random() < 0.5:
                spec: dict[str, Any] = {
                    "backend": {"type": "embedded", "embedded": {"storage": "emptyDir"}}
                }
            else:
                spec = {
                    "replicas": rng.randint(1, 3),
                    "backend": {
                        "type": "redis",
                        "redis": {"host": "127.0.0.1", "port": redis.port},
                    },
                }
            spec["cache"] = {"ttlSeconds": rng.randint(1, 60)}
            if action == "update" and live[name]["backend"]["type"] != spec["backend"]["type"]:
                spec["backend"] = live[name]["backend"]  # the type stays (keeps the test simple)
                if spec["backend"]["type"] == "embedded":
                    spec.pop("replicas", None)
            c.apply(name, spec)
            live[name] = spec
        time.sleep(rng.uniform(0.0, 1.5))
        # A kill is "mid-reconcile" when the store it touched is not converged yet.
        mid = not converged(c, name, live[name]) if name in live else not gone(c, name)
        mid_reconcile_kills += int(mid)
        op.kill()
        for n in live:
            tok = token_of(c, n)
            if tok is not None:
                assert tokens.setdefault(n, tok) == tok, f"{n}: the auth token changed"
        op.start({}, write_delay=delay, keep_standby=True)

    for name in names:
        if name in live:
            wait_for(lambda n=name: converged(c, n, live[n]), what=f"{name} to converge")
            tok = token_of(c, name)
            assert tok is not None
            assert tokens.setdefault(name, tok) == tok
        else:
            wait_for(lambda n=name: gone(c, n), what=f"{name}'s children to be collected")
    elapsed = time.monotonic() - started
    print(
        f"\nkill cycles: {cycles} ({counts}), kills mid-reconcile: {mid_reconcile_kills}, "
        f"operator starts: {op.starts}, wall time {elapsed:.0f}s"
    )
    assert mid_reconcile_kills >= cycles // 4, "too few kills landed mid-reconcile"
    op.stop()
