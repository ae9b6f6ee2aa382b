"""The operator under the ClusterRole it ships (operator/memstore_operator/rbac.yaml),
authenticated as a ServiceAccount with a bound token: no 403 anywhere, and a store with
every kind of child (Secrets read and generated, ServiceMonitor) still converges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.operator.conftest import Cluster, OperatorProcess, store_selector, wait_for
from tests.servers.kube import KubeAPI

RBAC = Path(__file__).resolve().parents[2] / "operator" / "memstore_operator" / "rbac.yaml"


def test_operator_runs_with_its_cluster_role_only(
    operator_proc: OperatorProcess,
    kube_api: KubeAPI,
    kube_namespace: str,
    redis_factory: Any,
    tmp_path: Path,
) -> None:
    cluster = kube_api.cluster
    ns = kube_namespace
    cluster.kubectl("apply", "-f", str(RBAC))
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
    assert "Forbidden" not in log
    assert " 403" not in log
    assert "rbac-pw-77" not in log
    op.stop()
    cluster.kubectl("delete", "clusterrolebinding", f"memstore-operator-{ns}")
