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
from datetime import UTC, datetime, timedelta

from tests.helm.conftest import Helm
from tests.node.conftest import (
    diagnostics,
    image_sets,
    install,
    pods,
    ready,
    readyz_calls,
    store_pods,
    wait_store_ready,
)
from tests.servers.node import KubeNode, image_ref
from tests.support.waiting import wait_for

#: The operator's liveness checks: the first 5 s after start, then every 2 s; two failures
#: in a row restart the container.
LIVENESS_DELAY, LIVENESS_PERIOD = 5, 2
FAST_LIVENESS = (
    f"operator.livenessProbe.initialDelaySeconds={LIVENESS_DELAY}",
    f"operator.livenessProbe.periodSeconds={LIVENESS_PERIOD}",
    "operator.livenessProbe.failureThreshold=2",
)


def test_chart_runs_on_the_node(kube_node: KubeNode, node_helm: Helm, namespace: str) -> None:
    release = "rel"
    install(kube_node, node_helm, namespace, release, (*image_sets(), *FAST_LIVENESS))
    _, tag = image_ref()

    # The operator: its pod runs the image's memstore-operator, Ready, and the kubelet's
    # liveness checks keep passing for four periods after the first one.
    operator_sel = "app.kubernetes.io/component=operator"
    (operator,) = wait_for(
        lambda: [p for p in pods(kube_node, namespace, operator_sel) if ready(p)],
        "the operator pod Ready",
        timeout=60,
    )
    started = datetime.fromisoformat(
        operator["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    )
    checked = started + timedelta(seconds=LIVENESS_DELAY + 4 * LIVENESS_PERIOD)
    time.sleep(max(0.0, (checked - datetime.now(UTC)).total_seconds()))
    (operator,) = pods(kube_node, namespace, operator_sel)
    status = operator["status"]["containerStatuses"][0]
    assert ready(operator), diagnostics(kube_node, namespace)
    assert status["restartCount"] == 0, diagnostics(kube_node, namespace)
    assert status["image"].endswith(f":{tag}")
    unhealthy = kube_node.cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Unhealthy", "-o", "name"
    ).stdout
    assert unhealthy == "", diagnostics(kube_node, namespace)

    # The default MemoryStore: its pod is Ready, which the kubelet sets only once its
    # readiness probe on /readyz answered 2xx; the store's own metrics count those calls.
    store = f"{release}-memstore"
    wait_store_ready(kube_node, namespace, store)
    (pod,) = store_pods(kube_node, namespace, store)
    assert ready(pod), diagnostics(kube_node, namespace)
    assert pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert readyz_calls(kube_node, namespace, pod["metadata"]["name"]) >= 1

    # helm test: its pod runs on the node and reaches the store's Service by DNS name; --logs
    # reads the finished pod's log through the apiserver and the kubelet.
    tested = node_helm.run(
        "test", release, "-n", namespace, "--timeout", "3m", "--logs", check=False
    )
    assert tested.returncode == 0, (
        f"helm test failed:\n{tested.stderr}{tested.stdout}\n{diagnostics(kube_node, namespace)}"
    )
    assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout
    assert re.search(r"/readyz: HTTP 200", tested.stdout), tested.stdout
