"""The chart against a real kube-apiserver + controller-manager (tests/servers/kube.py).

The test cluster has no kubelet, so the operator Deployment's pod never runs there. The
tests run the operator the way that pod would: ``memstore-operator`` with the environment
of the chart's Deployment and the chart's ServiceAccount credentials (a token from the
TokenRequest API, what the kubelet mounts into the pod). So "it reconciles" is also the
proof that the chart's RBAC is sufficient, and its log must hold no permission error.

Each test gets its own namespace (labelled with the *restricted* Pod Security Standard,
enforced by the API server's PodSecurity admission) and its own release.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.servers.kube import KubeAPI, KubeCluster, free_port
from tests.support.waiting import wait_for
from tools.chartgen import CHART, CRD_FILE

CRD_NAME = "memorystores.memory.datamcp.io"
PERMISSION_ERRORS = ("Forbidden", "forbidden", "Not enough permissions", " 403")


@dataclass
class Env:
    cluster: KubeCluster
    helm: Helm
    namespace: str
    release: str
    tmp: Path

    def kubectl_json(self, *args: str, namespaced: bool = True) -> Any:
        ns = ["-n", self.namespace] if namespaced else []
        return json.loads(self.cluster.kubectl(*args, *ns, "-o", "json").stdout)

    def get(self, kind: str, name: str) -> Any | None:
        out = self.cluster.kubectl(
            "get", kind, name, "-n", self.namespace, "-o", "json", check=False
        )
        return json.loads(out.stdout) if out.returncode == 0 else None

    def install(self, *sets: str, action: str = "install") -> subprocess.CompletedProcess[str]:
        args = [action, self.release, str(CHART), "-n", self.namespace]
        for s in sets:
            args += ["--set", s]
        return self.helm.run(*args)

    @property
    def store(self) -> str:
        return f"{self.release}-memstore"

    @property
    def service_account(self) -> str:
        return f"{self.release}-memstore-operator"


@pytest.fixture
def env(kube_api: KubeAPI, helm: Helm, tmp_path: Path) -> Iterator[Env]:
    cluster = kube_api.cluster
    namespace = f"h-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    e = Env(cluster, helm.with_kubeconfig(cluster.kubeconfig), namespace, "r1", tmp_path)
    try:
        yield e
    finally:
        e.helm.run("uninstall", e.release, "-n", namespace, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def sa_kubeconfig(env: Env, path: Path) -> Path:
    """A kubeconfig holding a token of the chart's ServiceAccount (TokenRequest API)."""
    token = env.cluster.kubectl(
        "create", "token", env.service_account, "-n", env.namespace, "--duration=1h"
    ).stdout.strip()
    assert token
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "test",
                        "cluster": {
                            "server": env.cluster.server,
                            "certificate-authority": str(env.cluster.pki / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path


class ChartOperator:
    """``memstore-operator`` with the chart Deployment's environment and credentials."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.kubeconfig = sa_kubeconfig(env, env.tmp / "sa-kubeconfig")
        self.log = env.tmp / "operator.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def chart_env(self) -> dict[str, str]:
        (dep,) = self.env.kubectl_json(
            "get", "deployment", "-l", "app.kubernetes.io/component=operator"
        )["items"]
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["memstore-operator"]
        return {e["name"]: e["value"] for e in container["env"] if "value" in e}

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env.update(self.chart_env())
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            MEMSTORE_OPERATOR_LIVENESS=f"http://127.0.0.1:{self.port}/healthz",
            # Not the chart's fixed port: several operators may run on this machine.
            MEMSTORE_OPERATOR_METRICS_PORT=str(free_port()),
            MEMSTORE_OPERATOR_METRICS_ADDR="127.0.0.1",
            MEMSTORE_OPERATOR_RESYNC_SECONDS="1",
            MEMSTORE_OPERATOR_RETRY_SECONDS="1",
            MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS="1",
        )
        # The console script the chart's Deployment runs, from this environment.
        program = Path(sys.executable).with_name("memstore-operator")
        with self.log.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [str(program)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def alive() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.text()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)

        wait_for(alive, "the operator's liveness endpoint", timeout=90)

    def text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def assert_no_permission_error(self) -> None:
        text = self.text()
        for marker in PERMISSION_ERRORS:
            assert marker not in text, f"permission error in the operator log:\n{text[-4000:]}"


@contextlib.contextmanager
def chart_operator(env: Env) -> Iterator[ChartOperator]:
    op = ChartOperator(env)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def reconciled(env: Env, name: str) -> dict[str, Any] | None:
    """The MemoryStore once the operator has reconciled its current generation."""
    store = env.get("memorystore", name)
    if store is None:
        return None
    status = store.get("status") or {}
    if status.get("observedGeneration") != store["metadata"]["generation"]:
        return None
    if not status.get("configHash"):
        return None
    dep = env.get("deployment", name)
    if dep is None:
        return None
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    if annotations.get("memory.datamcp.io/config-hash") != status["configHash"]:
        return None
    result: dict[str, Any] = store
    return result


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(
        ref["uid"] == owner["metadata"]["uid"] and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences", [])
    )


def pods(env: Env, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = env.kubectl_json("get", "pods", "-l", selector)["items"]
    return items


def test_install_creates_the_store_and_the_operator_reconciles_it(env: Env) -> None:
    out = env.install()
    # PodSecurity warn=restricted: helm would print the violations of any pod template.
    assert "would violate PodSecurity" not in out.stderr
    # NOTES.txt tells how to reach the service.
    assert f"http://{env.store}.{env.namespace}.svc:8080" in out.stdout
    assert f"port-forward service/{env.store} 8080:8080" in out.stdout
    assert f"get secret {env.store}-auth -o jsonpath='{{.data.token}}'" in out.stdout
    crd = env.kubectl_json("get", "crd", CRD_NAME, namespaced=False)
    assert crd["spec"]["group"] == "memory.datamcp.io"

    with chart_operator(env) as op:
        store = wait_for(lambda: reconciled(env, env.store), "the store to be reconciled")
        status = store["status"]
        assert status["phase"] in ("Progressing", "Ready")
        assert status["endpoint"] == f"http://{env.store}.{env.namespace}.svc:8080"
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["SecretsResolved"] == "True"
        for kind in ("deployment", "service", "configmap"):
            child = env.get(kind, env.store) or env.get(kind, f"{env.store}-config")
            assert child is not None, kind
            assert owned_by(child, store), kind
        dep = env.get("deployment", env.store)
        assert dep is not None
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "ghcr.io/memstore/memstore:0.1.0"
        )
        # Both Deployments' pods were admitted under the restricted Pod Security Standard
        # (the ReplicaSet controller creates them; they stay Pending without a kubelet).
        wait_for(lambda: pods(env, "app.kubernetes.io/component=operator"), "operator pod")
        wait_for(lambda: pods(env, "app.kubernetes.io/component=server"), "server pod")
        log = op.text()
        assert "Handler 'reconcile_store' succeeded" in log
        op.assert_no_permission_error()


def test_upgrade_with_a_changed_value_rolls_the_store(env: Env) -> None:
    env.install()
    with chart_operator(env) as op:
        before = wait_for(lambda: reconciled(env, env.store), "the first reconcile")
        dep_before = env.get("deployment", env.store)
        assert dep_before is not None
        env.install(
            "memoryStore.spec.memoryNamespace=team-b", "operator.logLevel=DEBUG", action="upgrade"
        )

        def rolled() -> dict[str, Any] | None:
            store = reconciled(env, env.store)
            if store is None or store["status"]["configHash"] == before["status"]["configHash"]:
                return None
            return store

        after = wait_for(rolled, "the store to roll")
        assert after["spec"]["memoryNamespace"] == "team-b"
        assert after["metadata"]["generation"] > before["metadata"]["generation"]
        config = env.get("configmap", f"{env.store}-config") or {}
        assert "team-b" in json.dumps(config.get("data", {}))
        # The Deployment rolled: a new pod template, so a second ReplicaSet.
        dep = env.get("deployment", env.store)
        assert dep is not None
        assert dep["metadata"]["generation"] > dep_before["metadata"]["generation"]
        wait_for(
            lambda: (
                len(
                    env.kubectl_json("get", "rs", "-l", "app.kubernetes.io/component=server")[
                        "items"
                    ]
                )
                == 2
            ),
            "a second server ReplicaSet",
        )
        # The operator's own Deployment rolled too (its env changed).
        wait_for(
            lambda: (
                len(
                    env.kubectl_json("get", "rs", "-l", "app.kubernetes.io/component=operator")[
                        "items"
                    ]
                )
                == 2
            ),
            "a second operator ReplicaSet",
        )
        op.assert_no_permission_error()


def test_uninstall_leaves_no_operator_objects(env: Env) -> None:
    env.install(
        "networkPolicy.enabled=true",
        "podDisruptionBudget.enabled=true",
        "grafanaDashboard.enabled=true",
        "memoryStore.spec.auth.enabled=true",
    )
    instance = f"app.kubernetes.io/instance={env.release}"
    with chart_operator(env) as op:
        wait_for(lambda: reconciled(env, env.store), "the store to be reconciled")
        assert env.get("persistentvolumeclaim", f"{env.store}-data") is not None
        assert env.get("secret", f"{env.store}-auth") is not None  # generated by the operator
        op.assert_no_permission_error()
        # The operator keeps running during the uninstall, as its pod would until Helm
        # deletes its Deployment (its credentials go with its ServiceAccount).
        env.helm.run("uninstall", env.release, "-n", env.namespace, "--wait")

        kinds = (
            "deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,"
            "persistentvolumeclaims,poddisruptionbudgets,networkpolicies,roles,rolebindings,"
            "memorystores"
        )

        def leftovers() -> list[str]:
            items = env.kubectl_json("get", kinds)["items"]
            names = [f"{i['kind']}/{i['metadata']['name']}" for i in items]
            # What Kubernetes itself keeps in every namespace.
            return [
                n
                for n in names
                if n not in ("ServiceAccount/default", "ConfigMap/kube-root-ca.crt")
            ]

        wait_for(lambda: not leftovers() or None, "every object of the release to go")
        assert leftovers() == []
        cluster_scoped = env.kubectl_json(
            "get", "clusterroles,clusterrolebindings", "-l", instance, namespaced=False
        )["items"]
        assert [
            i["metadata"]["name"] for i in cluster_scoped if env.namespace in i["metadata"]["name"]
        ] == []
    # Helm keeps what it installed from crds/.
    assert (
        env.kubectl_json("get", "crd", CRD_NAME, namespaced=False)["metadata"]["name"] == CRD_NAME
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["memoryStore.spec.backend.type=cassandra"], "value must be one of 'embedded'"),
        (["memoryStore.spec.replicas=two"], "/memoryStore/spec/replicas': got string, want"),
        (["rbac.create=yes"], "/rbac/create': got string, want boolean"),
    ],
)
def test_bad_values_fail_at_install(env: Env, sets: list[str], message: str) -> None:
    args = ["install", env.release, str(CHART), "-n", env.namespace]
    for s in sets:
        args += ["--set", s]
    out = env.helm.run(*args, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert message in out.stderr
    assert env.helm.run("list", "-n", env.namespace, "-q").stdout.strip() == ""
    assert env.kubectl_json("get", "deployments,memorystores,roles")["items"] == []


def can_i(env: Env, kubeconfig: Path, verb: str, resource: str, namespace: str) -> bool:
    out = env.cluster.kubectl(
        f"--kubeconfig={kubeconfig}", "auth", "can-i", verb, resource, "-n", namespace,
        check=False,
    )  # fmt: skip
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), out.stderr
    return answer == "yes"


def test_rbac_grants_what_the_operator_needs_and_denies_the_rest(env: Env) -> None:
    env.install()
    kc = sa_kubeconfig(env, env.tmp / "sa-kubeconfig")
    ns = env.namespace
    needed = [
        ("watch", "memorystores.memory.datamcp.io"),
        ("patch", "memorystores.memory.datamcp.io/status"),
        ("create", "deployments.apps"),
        ("patch", "services"),
        ("get", "secrets"),
        ("create", "events"),
    ]
    for verb, resource in needed:
        assert can_i(env, kc, verb, resource, ns), f"{verb} {resource} should be allowed"
    denied = [
        ("list", "secrets", ns),
        ("watch", "secrets", ns),
        ("update", "secrets", ns),
        ("delete", "secrets", ns),
        ("delete", "memorystores.memory.datamcp.io", ns),
        ("create", "pods", ns),
        ("delete", "deployments.apps", ns),
        ("create", "roles.rbac.authorization.k8s.io", ns),
        ("get", "configmaps", "default"),  # another namespace
        ("patch", "memorystores.memory.datamcp.io", "default"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io", ns),
    ]
    for verb, resource, where in denied:
        assert not can_i(env, kc, verb, resource, where), f"{verb} {resource} in {where}"
    # A real request, refused by the API server.
    out = env.cluster.kubectl(f"--kubeconfig={kc}", "get", "secrets", "-n", ns, check=False)
    assert out.returncode != 0
    assert "Forbidden" in out.stderr
    assert f"system:serviceaccount:{ns}:{env.service_account}" in out.stderr
    out = env.cluster.kubectl(
        f"--kubeconfig={kc}", "delete", "memorystore", env.store, "-n", ns, check=False
    )
    assert "Forbidden" in out.stderr
    assert env.get("memorystore", env.store) is not None


def test_cluster_wide_rbac_is_sufficient(env: Env) -> None:
    """rbac.clusterWide: ClusterRole + ClusterRoleBinding instead of Roles. The operator
    watches only this namespace here, so it does not touch other tests' stores."""
    env.install("rbac.clusterWide=true", f"operator.watchNamespaces={{{env.namespace}}}")
    assert env.kubectl_json("get", "roles")["items"] == []
    kc = sa_kubeconfig(env, env.tmp / "sa-kubeconfig")
    assert can_i(env, kc, "patch", "memorystores.memory.datamcp.io", "default")
    assert not can_i(env, kc, "list", "secrets", "default")
    with chart_operator(env) as op:
        wait_for(lambda: reconciled(env, env.store), "the store to be reconciled")
        assert "Handler 'reconcile_store' succeeded" in op.text()
        op.assert_no_permission_error()


def test_crd_file_is_applied_unchanged(env: Env) -> None:
    """What the cluster serves is the chart's crds/ file (installed by Helm or by the
    operator tests' fixture, whichever ran first: both use that file)."""
    import yaml

    env.install("memoryStore.enabled=false")
    live = env.kubectl_json("get", "crd", CRD_NAME, namespaced=False)
    local = yaml.safe_load(CRD_FILE.read_text())
    assert live["spec"]["versions"][0]["schema"] == local["spec"]["versions"][0]["schema"]
    assert live["spec"]["names"]["shortNames"] == local["spec"]["names"]["shortNames"]


def test_helm_test_keeps_the_finished_pod_for_its_logs(env: Env) -> None:
    """`helm test --logs` reads the test pod's log after the pod finished: helm must not
    have deleted it by then. Without a kubelet the pod never runs, so the test plays the
    kubelet's part: it reports the pod Succeeded through the status subresource; helm's
    own wait and delete policy do the rest. A second `helm test` replaces the pod
    (before-hook-creation), so runs do not collide."""
    env.install()
    pod_name = f"{env.release}-memstore-test-readyz"

    def run_helm_test(previous: str | None = None) -> str:
        result: list[subprocess.CompletedProcess[str]] = []
        args = ("test", env.release, "-n", env.namespace, "--timeout", "120s")
        runner = threading.Thread(target=lambda: result.append(env.helm.run(*args, check=False)))
        runner.start()

        def new_pod() -> dict[str, Any] | None:
            # Not the previous run's pod, which helm deletes before creating this one.
            pod = env.get("pod", pod_name)
            return pod if pod is not None and pod["metadata"]["uid"] != previous else None

        pod = wait_for(new_pod, "the helm test pod")
        status = {"status": {"phase": "Succeeded"}}
        env.cluster.kubectl(
            "patch", "pod", pod_name, "-n", env.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps(status),
        )  # fmt: skip
        runner.join(timeout=150)
        assert result, "helm test did not finish"
        assert result[0].returncode == 0, result[0].stderr + result[0].stdout
        assert "Phase:          Succeeded" in result[0].stdout, result[0].stdout
        uid: str = pod["metadata"]["uid"]
        return uid

    first = run_helm_test()
    kept = env.get("pod", pod_name)
    assert kept is not None, "helm deleted the succeeded test pod: `helm test --logs` fails"
    assert kept["metadata"]["uid"] == first
    second = run_helm_test(previous=first)
    assert second != first
