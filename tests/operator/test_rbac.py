"""The operator under the ClusterRole it ships (operator/memstore_operator/rbac.yaml),
authenticated as a ServiceAccount with a bound token: no RBAC denial anywhere, and a
store with Secrets read and generated converges. With a permission taken away, the
failure shows on the resource's Ready condition, and recovers when it is given back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.operator.conftest import Cluster, OperatorProcess, store_selector
from tests.servers.kube import KubeAPI, KubeCluster
from tests.support.waiting import wait_for

RBAC = Path(__file__).resolve().parents[2] / "operator" / "memstore_operator" / "rbac.yaml"


def role(without_secret_create: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RBAC.read_text())
    if without_secret_create:
        for rule in doc["rules"]:
            if rule["resources"] == ["secrets"]:
                rule["verbs"] = ["get", "list", "watch"]
    return doc


def operator_identity(
    cluster: KubeCluster, ns: str, tmp_path: Path, role_doc: dict[str, Any]
) -> Path:
    """Apply the role, bind it to a ServiceAccount in ``ns``, and write a kubeconfig
    with that account's bound token."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(role_doc))
    cluster.kubectl("create", "serviceaccount", "memstore-operator", "-n", ns)
    cluster.kubectl(
        "create", "clusterrolebinding", f"memstore-operator-{ns}",
        "--clusterrole=memstore-operator", f"--serviceaccount={ns}:memstore-operator",
    )  # fmt: skip
    token = cluster.kubectl(
        "create", "token", "memstore-operator", "-n", ns, "--duration=1h"
    ).stdout.strip()
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "test",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": str(cluster.pki / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "op", "context": {"cluster": "test", "user": "operator"}}],
                "current-context": "op",
            }
        )
    )
    who = cluster.kubectl(f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json")
    assert f"system:serviceaccount:{ns}:memstore-operator" in who.stdout
    return kubeconfig


def test_operator_runs_with_its_cluster_role_only(
    operator_proc: OperatorProcess,
    kube_api: KubeAPI,
    kube_namespace: str,
    redis_factory: Any,
    tmp_path: Path,
) -> None:
    cluster = kube_api.cluster
    ns = kube_namespace
    kubeconfig = operator_identity(cluster, ns, tmp_path, role())
    op = operator_proc
    op.stop()
    op.start({"KUBECONFIG": str(kubeconfig)})
    c = Cluster(kube_api, ns)
    redis = redis_factory(password="rbac-pw-77")
    c.kubectl("create", "secret", "generic", "rp", "--from-literal=password=rbac-pw-77")
    c.apply(
        "rb",
        {
            "replicas": 2,
            "backend": {
                "type": "redis",
                "redis": {
                    "host": "127.0.0.1",
                    "port": redis.port,
                    "passwordSecretRef": {"name": "rp", "key": "password"},
                },
            },
        },
    )
    wait_for(lambda: c.mark_pods_ready(store_selector("rb")) == 2, what="two pods")
    wait_for(lambda: (c.store("rb").get("status") or {}).get("phase") == "Ready", what="Ready")
    backend = c.condition("rb", "BackendReachable")
    assert backend is not None
    assert backend["reason"] == "Pong"
    assert c.obj("Secret", "rb-auth") is not None
    log = op.log_path.read_text(errors="replace")
    # An RBAC denial reads 'User "system:serviceaccount:..." cannot <verb> resource ...'
    # (other 403s, e.g. for a namespace a previous test left terminating, are not ours).
    denials = [line for line in log.splitlines() if "cannot " in line and "system:" in line]
    assert denials == []
    assert "rbac-pw-77" not in log
    op.stop()
    cluster.kubectl("delete", "clusterrolebinding", f"memstore-operator-{ns}")


def test_a_missing_permission_shows_on_the_resource_and_recovers(
    operator_proc: OperatorProcess, kube_api: KubeAPI, kube_namespace: str, tmp_path: Path
) -> None:
    cluster = kube_api.cluster
    ns = kube_namespace
    kubeconfig = operator_identity(cluster, ns, tmp_path, role(without_secret_create=True))
    op = operator_proc
    op.stop()
    op.start({"KUBECONFIG": str(kubeconfig)})
    c = Cluster(kube_api, ns)
    c.apply("perm", {"backend": {"type": "embedded", "embedded": {"storage": "emptyDir"}}})

    def error() -> dict[str, Any] | None:
        got = c.condition("perm", "Ready")
        return got if got is not None and got["reason"] == "ReconcileError" else None

    cond = wait_for(error, what="a ReconcileError condition")
    assert cond["status"] == "False"
    assert 'cannot create resource \\"secrets\\"' in cond["message"] or (
        'cannot create resource "secrets"' in cond["message"]
    )
    assert c.obj("Deployment", "perm") is None

    cluster.kubectl("apply", "-f", "-", input=json.dumps(role()))  # the permission is back
    wait_for(lambda: c.obj("Deployment", "perm"), what="the Deployment")
    wait_for(
        lambda: (c.condition("perm", "Ready") or {}).get("reason") != "ReconcileError",
        what="the error condition to clear",
    )
    op.stop()
    cluster.kubectl("delete", "clusterrolebinding", f"memstore-operator-{ns}")
