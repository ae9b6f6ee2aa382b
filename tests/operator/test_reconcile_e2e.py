"""The operator against a real kube-apiserver + kube-controller-manager (tests/servers/kube.py).

There is no kubelet and no scheduler: pods stay Pending until a test marks them Ready
itself (:meth:`Cluster.mark_pods_ready`, playing the kubelet); the ReplicaSet and
Deployment controllers then do the rest, and their status is what the operator follows.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.operator.conftest import (
    GROUP,
    PLURAL,
    VERSION,
    Cluster,
    OperatorProcess,
    store_selector,
)
from tests.servers.kube import KubeAPI
from tests.servers.redis import ACL_USER, LocalRedis
from tests.support.tls import TlsFiles, make_tls_files
from tests.support.waiting import wait_for

CHILD_KINDS = ("ConfigMap", "Secret", "Service", "Deployment", "PodDisruptionBudget")


def resync_count(op: OperatorProcess) -> float:
    for fam in text_string_to_metric_families(op.metrics()):
        if fam.name == "memstore_operator_reconciles":
            return sum(
                s.value
                for s in fam.samples
                if s.name.endswith("_total") and s.labels.get("trigger") == "resync"
            )
    return 0.0


def wait_resyncs(op: OperatorProcess, n: int = 3) -> None:
    """Wait until the operator has run ``n`` more periodic reconcile passes."""
    start = resync_count(op)
    wait_for(lambda: resync_count(op) >= start + n, what=f"{n} resync passes")


def versions(c: Cluster, name: str) -> dict[str, str]:
    out = {"MemoryStore": c.store(name)["metadata"]["resourceVersion"]}
    for kind, child in (
        ("ConfigMap", f"{name}-config"),
        ("Secret", f"{name}-auth"),
        ("Service", name),
        ("Deployment", name),
        ("PodDisruptionBudget", name),
        ("PersistentVolumeClaim", f"{name}-data"),
    ):
        got = c.obj(kind, child)
        assert got is not None, f"{kind} {child} missing"
        meta = got["metadata"]
        if kind in ("Deployment", "PodDisruptionBudget"):
            # Their controllers keep writing status (new resourceVersions); what the
            # operator owns is the spec (generation) and its own managedFields entry.
            ours = [
                (m["operation"], m["time"])
                for m in meta["managedFields"]
                if m["manager"] == "memstore-operator"
            ]
            out[kind] = f"gen={meta['generation']} ops={ours}"
        else:
            out[kind] = meta["resourceVersion"]
    return out


def phase(c: Cluster, name: str) -> str | None:
    got: str | None = (c.store(name).get("status") or {}).get("phase")
    return got


def test_apply_reconciles_children_status_and_is_idempotent(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    spec: dict[str, Any] = {"backend": {"type": "embedded"}, "cache": {"ttlSeconds": 10}}
    out = c.apply("mem", spec)
    assert "created" in out.stdout

    dep = wait_for(lambda: c.obj("Deployment", "mem"), what="the Deployment")
    uid = c.store("mem")["metadata"]["uid"]
    for kind, child in (
        ("ConfigMap", "mem-config"),
        ("Secret", "mem-auth"),
        ("Service", "mem"),
        ("Deployment", "mem"),
        ("PodDisruptionBudget", "mem"),
        ("PersistentVolumeClaim", "mem-data"),
    ):
        obj = wait_for(lambda k=kind, n=child: c.obj(k, n), what=f"{kind} {child}")
        owners = obj["metadata"]["ownerReferences"]
        assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [
            ("MemoryStore", uid, True)
        ], kind

    # The Deployment: probes, checksum, restricted security context, requests, auth mount.
    pod = dep["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert ctr["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert ctr["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert ctr["envFrom"] == [{"configMapRef": {"name": "mem-config"}}]
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    assert mounts["auth"] == "/etc/memstore/auth"
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    checksum = annotations["memory.datamcp.io/config-hash"]

    # The restricted Pod Security Standard admits the pods: label the namespace and
    # ask the apiserver to check the running Deployment's pod template (server dry-run).
    c.kube.cluster.kubectl(
        "label", "ns", c.ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    check = c.kubectl(
        "run", "psa-check", "--image=x", "--dry-run=server", "-o", "name",
        "--overrides", json.dumps({"spec": pod}),
    )  # fmt: skip
    assert "psa-check" in check.stdout, check.stderr

    # Auth: the generated Secret holds the token and its hash; the ConfigMap only flags.
    secret = c.obj("Secret", "mem-auth")
    assert secret is not None
    token = base64.b64decode(secret["data"]["token"]).decode()
    tokens = json.loads(base64.b64decode(secret["data"]["tokens.json"]))
    assert tokens["tokens"][0]["roles"] == ["read", "write", "admin"]
    cm = c.obj("ConfigMap", "mem-config")
    assert cm is not None
    assert cm["data"]["MEMSTORE_AUTH_ENABLED"] == "true"
    assert cm["data"]["MEMSTORE_AUTH_TOKENS_FILE"] == "/etc/memstore/auth/tokens.json"
    assert cm["data"]["MEMSTORE_CACHE_TTL_SECONDS"] == "10"
    for kind in ("ConfigMap", "Deployment", "Service"):
        assert token not in json.dumps(c.listing(kind)), kind
    assert token not in op.log_path.read_text(errors="replace")

    # Status while no pod is ready, then after the (simulated) kubelet marks it Ready.
    def status_is(want: str) -> dict[str, Any] | None:
        st: dict[str, Any] = c.store("mem").get("status") or {}
        return st if st.get("phase") == want else None

    st = wait_for(lambda: status_is("Progressing"), what="phase Progressing")
    assert st["configHash"] == checksum
    assert st["endpoint"] == f"http://mem.{c.ns}.svc:8080"
    conds = {x["type"]: x for x in st["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Progressing"]["status"] == "True"
    assert conds["BackendReachable"]["status"] == "True"
    assert conds["BackendReachable"]["reason"] == "Embedded"

    wait_for(lambda: c.mark_pods_ready(store_selector("mem")) == 1, what="one pod to mark")
    st = wait_for(lambda: status_is("Ready"), what="phase Ready")
    conds = {x["type"]: x for x in st["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] == "Available"
    assert conds["Progressing"]["status"] == "False"
    assert st["readyReplicas"] == 1
    assert st["observedGeneration"] == c.store("mem")["metadata"]["generation"]
    table = c.kubectl("get", "ms", "mem").stdout
    assert table.split()[:6] == ["NAME", "BACKEND", "REPLICAS", "READY", "PHASE", "AGE"]
    assert table.split()[6:11] == ["mem", "embedded", "1", "1", "Ready"]

    # Applying the same manifest again, and several resync passes, change nothing.
    before = versions(c, "mem")
    assert "unchanged" in c.apply("mem", spec).stdout
    wait_resyncs(op, 3)
    assert versions(c, "mem") == before


def test_setting_change_rolls_and_scale_subresource(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str, redis_factory: Any
) -> None:
    c = Cluster(kube_api, kube_namespace)
    redis = redis_factory()
    spec: dict[str, Any] = {
        "replicas": 1,
        "backend": {"type": "redis", "redis": {"host": "127.0.0.1", "port": redis.port}},
    }
    c.apply("rs", spec)
    dep = wait_for(lambda: c.obj("Deployment", "rs"), what="the Deployment")
    old_hash = dep["spec"]["template"]["metadata"]["annotations"]["memory.datamcp.io/config-hash"]
    wait_for(lambda: len(c.listing("ReplicaSet", store_selector("rs"))) == 1, what="one ReplicaSet")
    cond = wait_for(
        lambda: (
            (c.condition("rs", "BackendReachable") or {}).get("status") == "True"
            and c.condition("rs", "BackendReachable")
        ),
        what="BackendReachable True",
    )
    assert cond["reason"] == "Pong"

    # A setting change: new ConfigMap data, new checksum, a second ReplicaSet (a rollout).
    spec["cache"] = {"ttlSeconds": 5}
    c.apply("rs", spec)

    def rolled() -> str | None:
        d = c.obj("Deployment", "rs")
        assert d is not None
        h: str = d["spec"]["template"]["metadata"]["annotations"]["memory.datamcp.io/config-hash"]
        return h if h != old_hash else None

    new_hash = wait_for(rolled, what="a new config checksum")
    cm = c.obj("ConfigMap", "rs-config")
    assert cm is not None
    assert cm["data"]["MEMSTORE_CACHE_TTL_SECONDS"] == "5"
    wait_for(
        lambda: len(c.listing("ReplicaSet", store_selector("rs"))) == 2,
        what="the Deployment controller to start a second ReplicaSet",
    )
    wait_for(lambda: c.store("rs")["status"].get("configHash") == new_hash, what="status hash")

    # kubectl scale goes through the CRD's scale subresource to spec.replicas, and from
    # there the operator carries it to the Deployment.
    out = c.kubectl("scale", "ms/rs", "--replicas=3")
    assert "scaled" in out.stdout
    assert c.store("rs")["spec"]["replicas"] == 3
    wait_for(
        lambda: (c.obj("Deployment", "rs") or {})["spec"]["replicas"] == 3,
        what="Deployment replicas 3",
    )
    raw = c.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/{c.ns}/{PLURAL}/rs/scale")
    scale = json.loads(raw.stdout)
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["selector"] == (
        "app.kubernetes.io/component=server,app.kubernetes.io/instance=rs,"
        "app.kubernetes.io/name=memstore"
    )


def test_scale_of_embedded_beyond_one_is_refused(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    c.apply("emb", {"backend": {"type": "embedded", "embedded": {"storage": "emptyDir"}}})
    out = c.kubectl("scale", "ms/emb", "--replicas=3", check=False)
    assert out.returncode != 0
    assert "the embedded backend keeps its data in one pod" in out.stderr
    assert c.store("emb")["spec"]["replicas"] == 1


def test_missing_secret_is_a_condition_and_recovers(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str, redis_factory: Any
) -> None:
    c = Cluster(kube_api, kube_namespace)
    redis = redis_factory(password="pw-Zq81")
    spec = {
        "replicas": 2,
        "backend": {
            "type": "redis",
            "redis": {
                "host": "127.0.0.1",
                "port": redis.port,
                "passwordSecretRef": {"name": "redis-pass", "key": "password"},
            },
        },
        "auth": {"secretRef": {"name": "my-tokens"}},
    }
    c.apply("sec", spec)

    def cond_reason(ctype: str, status: str) -> dict[str, Any] | None:
        got = c.condition("sec", ctype)
        return got if got is not None and got["status"] == status else None

    missing = wait_for(lambda: cond_reason("SecretsResolved", "False"), what="SecretNotFound")
    assert missing["reason"] == "SecretNotFound"
    assert "'redis-pass' not found" in missing["message"]
    assert "'my-tokens' not found" in missing["message"]
    assert phase(c, "sec") == "Pending"
    ready = c.condition("sec", "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    # Nothing that would crash-loop is deployed meanwhile.
    assert c.obj("Deployment", "sec") is None
    wait_for(
        lambda: (
            "SecretNotFound"
            in c.kubectl(
                "get", "events", "--field-selector=involvedObject.name=sec", "-o", "json"
            ).stdout
        ),
        what="a SecretNotFound Event",
    )

    # Fix one of the two: still missing, now only the other one.
    c.kubectl("create", "secret", "generic", "redis-pass", "--from-literal=password=pw-Zq81")
    wait_for(
        lambda: "redis-pass" not in (c.condition("sec", "SecretsResolved") or {})["message"],
        what="only my-tokens missing",
    )
    c.kubectl("create", "secret", "generic", "my-tokens", "--from-literal=tokens.json={}")
    ok = wait_for(lambda: cond_reason("SecretsResolved", "True"), what="secrets resolved")
    assert ok["reason"] == "Resolved"
    backend = wait_for(lambda: cond_reason("BackendReachable", "True"), what="redis PONG")
    assert backend["reason"] == "Pong"
    dep = wait_for(lambda: c.obj("Deployment", "sec"), what="the Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-pass",
        "key": "password",
    }
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["auth"]["secret"]["secretName"] == "my-tokens"
    assert c.obj("Secret", "sec-auth") is None  # a user Secret: nothing generated

    # Rotating a referenced Secret rolls the pods too (its resourceVersion is in the hash).
    before = dep["spec"]["template"]["metadata"]["annotations"]["memory.datamcp.io/config-hash"]
    rotated = c.kubectl(
        "create", "secret", "generic", "my-tokens", '--from-literal=tokens.json={"tokens": []}',
        "--dry-run=client", "-o", "json",
    ).stdout  # fmt: skip
    c.kubectl("apply", "-f", "-", input=rotated)
    wait_for(
        lambda: (
            (c.obj("Deployment", "sec") or {})["spec"]["template"]["metadata"]["annotations"][
                "memory.datamcp.io/config-hash"
            ]
            != before
        ),
        what="a new checksum after the Secret changed",
    )
    for kind in ("ConfigMap", "Deployment"):
        assert "pw-Zq81" not in json.dumps(c.listing(kind))
    assert "pw-Zq81" not in op.log_path.read_text(errors="replace")


def test_unreachable_backend_is_a_condition_and_recovers(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str, redis_factory: Any
) -> None:
    from tests.servers.kube import free_port

    c = Cluster(kube_api, kube_namespace)
    port = free_port()  # nothing listens there yet
    c.apply(
        "unr",
        {"replicas": 1, "backend": {"type": "redis", "redis": {"host": "127.0.0.1", "port": port}}},
    )
    down = wait_for(
        lambda: (
            (c.condition("unr", "BackendReachable") or {}).get("status") == "False"
            and c.condition("unr", "BackendReachable")
        ),
        what="BackendReachable False",
    )
    assert down["reason"] == "Unreachable"
    assert f"127.0.0.1:{port}" in down["message"]
    wait_for(lambda: c.mark_pods_ready(store_selector("unr")) == 1, what="one pod")
    wait_for(lambda: phase(c, "unr") == "Degraded", what="phase Degraded")
    ready = c.condition("unr", "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "Unreachable")

    redis_factory(port=port)  # the backend comes up: no action on the MemoryStore
    up = wait_for(
        lambda: (
            (c.condition("unr", "BackendReachable") or {}).get("status") == "True"
            and c.condition("unr", "BackendReachable")
        ),
        what="BackendReachable True",
    )
    assert up["reason"] == "Pong"
    wait_for(lambda: phase(c, "unr") == "Ready", what="phase Ready")


def test_delete_lets_the_garbage_collector_remove_children(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    c = Cluster(kube_api, kube_namespace)
    c.apply("gone", {"backend": {"type": "embedded"}})
    wait_for(lambda: c.obj("PodDisruptionBudget", "gone"), what="children")
    assert not c.store("gone")["metadata"].get("finalizers")
    c.kubectl("delete", "ms/gone", "--wait=true")
    sel = store_selector("gone")
    for kind in (*CHILD_KINDS, "PersistentVolumeClaim"):
        wait_for(lambda k=kind: c.listing(k, sel) == [], what=f"{kind} garbage-collected")


SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_service_monitor_follows_the_toggle_when_its_crd_exists(
    op: OperatorProcess, kube_api: KubeAPI, kube_namespace: str
) -> None:
    """The prometheus-operator CRD is installed after the operator started (a stand-in
    with the real group/kind and an open schema)."""
    c = Cluster(kube_api, kube_namespace)
    c.kube.cluster.kubectl("apply", "-f", "-", input=json.dumps(SERVICE_MONITOR_CRD))
    spec: dict[str, Any] = {
        "backend": {"type": "embedded"},
        "telemetry": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    }
    c.apply("mon", spec)

    def monitor() -> dict[str, Any] | None:
        out = c.kubectl("get", "servicemonitors.monitoring.coreos.com", "-o", "json")
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items[0] if items else None

    sm = wait_for(monitor, what="the ServiceMonitor")
    assert sm["metadata"]["name"] == "mon"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["metadata"]["ownerReferences"][0]["kind"] == "MemoryStore"
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    spec["telemetry"]["serviceMonitor"]["enabled"] = False
    c.apply("mon", spec)
    wait_for(lambda: monitor() is None, what="the ServiceMonitor to be removed")


def test_redis_over_mutual_tls_as_an_acl_user(
    op: OperatorProcess,
    kube_api: KubeAPI,
    kube_namespace: str,
    redis_mtls_server: LocalRedis,
    redis_tls_files: TlsFiles,
    redis_acl_password: str,
) -> None:
    """A MemoryStore on a mutual-TLS Redis as an ACL user, everything from Secrets: the
    operator's own check gets PONG over TLS with the CA and client certificate, and the
    Deployment mounts them read-only and reads the credentials from the Secret."""
    c = Cluster(kube_api, kube_namespace)
    c.kubectl(
        "create", "secret", "generic", "redis-user",
        f"--from-literal=username={ACL_USER}", f"--from-literal=password={redis_acl_password}",
    )  # fmt: skip
    c.kubectl("create", "secret", "generic", "redis-ca", f"--from-file=ca.crt={redis_tls_files.ca}")
    c.kubectl(
        "create", "secret", "tls", "memstore-redis-client",
        f"--cert={redis_tls_files.client_cert}", f"--key={redis_tls_files.client_key}",
    )  # fmt: skip
    spec = {
        "replicas": 1,
        "backend": {
            "type": "redis",
            "redis": {
                "host": "127.0.0.1",
                "port": redis_mtls_server.port,
                "usernameSecretRef": {"name": "redis-user", "key": "username"},
                "passwordSecretRef": {"name": "redis-user", "key": "password"},
                "tls": {
                    "caSecretRef": {"name": "redis-ca"},
                    "clientCertificateSecretRef": {"name": "memstore-redis-client"},
                },
            },
        },
        "auth": {"enabled": False},
    }
    c.apply("tls", spec)

    def reachable() -> dict[str, Any] | None:
        got = c.condition("tls", "BackendReachable")
        return got if got is not None and got["status"] == "True" else None

    backend = wait_for(reachable, what="redis PONG over mutual TLS")
    assert backend["reason"] == "Pong"
    dep = wait_for(lambda: c.obj("Deployment", "tls"), what="the Deployment")
    pod = dep["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in ctr["env"]}
    assert env["REDIS_USERNAME"] == {"name": "redis-user", "key": "username"}
    assert env["REDIS_PASSWORD"] == {"name": "redis-user", "key": "password"}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert [s["secret"]["name"] for s in vols["redis-tls"]["projected"]["sources"]] == [
        "redis-ca",
        "memstore-redis-client",
    ]
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    assert mounts["redis-tls"]["readOnly"] is True
    cm = c.obj("ConfigMap", "tls-config")
    assert cm is not None
    assert cm["data"]["MEMSTORE_REDIS_TLS"] == "true"
    assert cm["data"]["MEMSTORE_REDIS_TLS_CA_FILE"] == mounts["redis-tls"]["mountPath"] + "/ca.crt"
    for kind in ("ConfigMap", "Deployment"):
        assert redis_acl_password not in json.dumps(c.listing(kind))
    assert redis_acl_password not in op.log_path.read_text(errors="replace")

    # A client certificate the server does not trust: the check says why, no crash.
    other = make_tls_files(redis_tls_files.ca.parent / "untrusted")
    c.kubectl(
        "create", "secret", "tls", "untrusted-client",
        f"--cert={other.client_cert}", f"--key={other.client_key}",
    )  # fmt: skip
    spec["backend"]["redis"]["tls"]["clientCertificateSecretRef"] = {"name": "untrusted-client"}  # type: ignore[index]
    c.apply("tls", spec)
    failed = wait_for(
        lambda: (
            got
            if (got := c.condition("tls", "BackendReachable")) and got["status"] == "False"
            else None
        ),
        what="BackendReachable False with the untrusted client certificate",
    )
    assert failed["reason"] in ("TLSFailed", "Unreachable")
