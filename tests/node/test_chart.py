"""The chart on a real node (tests/servers/node.py): the locally built image runs, and the
kubelet calls the probes.

``helm install`` with the image `make test-image` built; the operator pod runs and its
liveness probe (made fast here: first call after 5 s, then every 2 s, two failures
restart it) keeps passing; the operator creates the default MemoryStore, whose pod
becomes Ready only when the kubelet's readiness probe on /readyz succeeds; ``helm test``
runs its pod, which calls the store's Service by its cluster DNS name.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.servers.node import KubeNode, image_ref
from tests.support.waiting import wait_for
from tools.chartgen import CHART

#: The operator's liveness checks: the first 5 s after start, then every 2 s; two failures
#: in a row restart the container.
LIVENESS_DELAY, LIVENESS_PERIOD = 5, 2
FAST_LIVENESS = (
    f"operator.livenessProbe.initialDelaySeconds={LIVENESS_DELAY}",
    f"operator.livenessProbe.periodSeconds={LIVENESS_PERIOD}",
    "operator.livenessProbe.failureThreshold=2",
)


def _ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def _pods(node: KubeNode, namespace: str, selector: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = node.kubectl_json("get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return out


def _diagnostics(node: KubeNode, namespace: str) -> str:
    out = node.cluster.kubectl("get", "pods,pvc,events", "-n", namespace, "-o", "wide", check=False)
    described = node.cluster.kubectl("describe", "pods", "-n", namespace, check=False)
    return f"{out.stdout}{out.stderr}\n{described.stdout[-6000:]}"


@pytest.fixture
def namespace(kube_node: KubeNode) -> Iterator[str]:
    name = f"n-{uuid.uuid4().hex[:8]}"
    kube_node.cluster.kubectl("create", "namespace", name)
    kube_node.cluster.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted"
    )
    yield name
    kube_node.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def node_helm(helm: Helm, kube_node: KubeNode) -> Helm:
    return helm.with_kubeconfig(kube_node.cluster.kubeconfig)


def test_chart_runs_on_the_node(kube_node: KubeNode, node_helm: Helm, namespace: str) -> None:
    repository, tag = image_ref()
    release = "rel"
    sets = (
        f"image.repository={repository}",
        f"image.tag={tag}",
        "image.pullPolicy=Never",  # the image was imported into the node, never pulled
        "memoryStore.spec.imagePullPolicy=Never",
        *FAST_LIVENESS,
    )
    args = ["install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "3m"]
    for s in sets:
        args += ["--set", s]
    installed = node_helm.run(*args, check=False)
    assert installed.returncode == 0, (
        f"helm install failed:\n{installed.stderr}\n{_diagnostics(kube_node, namespace)}"
    )

    # The operator: its pod runs the image's memstore-operator, Ready, and the kubelet's
    # liveness checks keep passing for four periods after the first one.
    operator_sel = "app.kubernetes.io/component=operator"
    (operator,) = wait_for(
        lambda: [p for p in _pods(kube_node, namespace, operator_sel) if _ready(p)],
        "the operator pod Ready",
        timeout=120,
    )
    started = datetime.fromisoformat(
        operator["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    )
    checked = started + timedelta(seconds=LIVENESS_DELAY + 4 * LIVENESS_PERIOD)
    time.sleep(max(0.0, (checked - datetime.now(UTC)).total_seconds()))
    (operator,) = _pods(kube_node, namespace, operator_sel)
    status = operator["status"]["containerStatuses"][0]
    assert _ready(operator), _diagnostics(kube_node, namespace)
    assert status["restartCount"] == 0, _diagnostics(kube_node, namespace)
    assert status["image"].endswith(f":{tag}")
    unhealthy = kube_node.cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Unhealthy", "-o", "name"
    ).stdout
    assert unhealthy == "", _diagnostics(kube_node, namespace)

    # The default MemoryStore: its pod is Ready, which the kubelet sets only once its
    # readiness probe on /readyz answered 2xx; the store's own metrics count those calls.
    store = f"{release}-memstore"
    wait_for(
        lambda: (
            kube_node.kubectl_json("get", "memorystore", store, "-n", namespace)["status"]["phase"]
            == "Ready"
        ),
        "the MemoryStore Ready",
        timeout=180,
    )
    pods = _pods(kube_node, namespace, f"app.kubernetes.io/instance={store}")
    store_pods = [p for p in pods if p["spec"]["containers"][0].get("readinessProbe")]
    assert store_pods and all(_ready(p) for p in store_pods), _diagnostics(kube_node, namespace)
    (pod,) = store_pods
    probe = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"
    metrics = kube_node.cluster.kubectl(
        "get", "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}:8080/proxy/metrics",
    ).stdout  # fmt: skip
    readyz_calls = [
        float(m.group(1))
        for m in re.finditer(r'^memstore_http_requests_total\{[^}]*route="/readyz"[^}]*\} (\S+)$',
                             metrics, re.M)
    ]  # fmt: skip
    assert readyz_calls and sum(readyz_calls) >= 1, metrics[:3000]

    # helm test: its pod runs on the node and reaches the store's Service by DNS name.
    tested = node_helm.run("test", release, "-n", namespace, "--timeout", "3m", check=False)
    assert tested.returncode == 0, (
        f"helm test failed:\n{tested.stderr}{tested.stdout}\n{_diagnostics(kube_node, namespace)}"
    )
    assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout
