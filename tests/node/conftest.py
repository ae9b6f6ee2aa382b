"""Fixtures and helpers of the node tests: a namespace per test (restricted Pod Security
Standard), helm on the node's cluster, and what the tests read from the node."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helm.conftest import Helm, helm
from tests.servers.node import KubeNode, image_ref
from tests.support.waiting import wait_for
from tools.chartgen import CHART

__all__ = ["helm"]


def image_sets() -> tuple[str, ...]:
    """Chart values for the image under test, imported into the node (never pulled)."""
    repository, tag = image_ref()
    return (
        "image.registry=",  # the repository is the whole name, as with `kind load`
        f"image.repository={repository}",
        f"image.tag={tag}",
        "image.pullPolicy=Never",
        "memoryStore.spec.imagePullPolicy=Never",
    )


def install(
    node: KubeNode, helm: Helm, namespace: str, release: str, sets: tuple[str, ...]
) -> None:
    args = ["install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "3m"]
    for s in sets:
        args += ["--set", s]
    out = helm.run(*args, check=False)
    assert out.returncode == 0, (
        f"helm install failed:\n{out.stderr}\n{diagnostics(node, namespace)}"
    )


def ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def pods(node: KubeNode, namespace: str, selector: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = node.kubectl_json("get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return out


def readyz_calls(node: KubeNode, namespace: str, pod: str) -> float:
    """How many GET /readyz the pod's service has answered (its own request metrics, read
    through the apiserver's pod proxy)."""
    metrics = node.cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/metrics"
    ).stdout
    pattern = r'^memstore_http_requests_total\{[^}]*route="/readyz"[^}]*\} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, metrics, re.M))


def store_pods(node: KubeNode, namespace: str, store: str) -> list[dict[str, Any]]:
    """The MemoryStore's server pods (the ones with its readiness probe)."""
    return [
        p
        for p in pods(node, namespace, f"app.kubernetes.io/instance={store}")
        if p["spec"]["containers"][0].get("readinessProbe")
    ]


def wait_store_ready(node: KubeNode, namespace: str, store: str) -> None:
    def phase_ready() -> bool:
        ms = node.kubectl_json("get", "memorystore", store, "-n", namespace)
        return bool(ms["status"]["phase"] == "Ready")

    try:
        wait_for(phase_ready, f"the MemoryStore {store} Ready", timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnostics(node, namespace)}") from None


def diagnostics(node: KubeNode, namespace: str) -> str:
    out = node.cluster.kubectl("get", "pods,pvc,events", "-n", namespace, "-o", "wide", check=False)
    described = node.cluster.kubectl("describe", "pods", "-n", namespace, check=False)
    # A container that exited says why in its log (e.g. a setting the service refused).
    crashed = ""
    listed = node.cluster.kubectl("get", "pods", "-n", namespace, "-o", "json", check=False)
    for pod in json.loads(listed.stdout or "{}").get("items", []):
        for status in pod.get("status", {}).get("containerStatuses", []):
            if status.get("restartCount", 0) > 0:
                name = pod["metadata"]["name"]
                log = node.cluster.kubectl(
                    "logs", name, "-c", status["name"], "-n", namespace, "--previous",
                    "--tail=20", check=False,
                )  # fmt: skip
                crashed += f"\nlast log of {name}/{status['name']} before its restart:\n"
                crashed += f"{log.stdout}{log.stderr}"
    return f"{out.stdout}{out.stderr}\n{described.stdout[-6000:]}{crashed}"


@contextlib.contextmanager
def new_namespace(node: KubeNode) -> Iterator[str]:
    """A namespace of its own (restricted Pod Security Standard), deleted afterwards."""
    name = f"n-{uuid.uuid4().hex[:8]}"
    node.cluster.kubectl("create", "namespace", name)
    node.cluster.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted"
    )
    try:
        yield name
    finally:
        node.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(kube_node: KubeNode) -> Iterator[str]:
    with new_namespace(kube_node) as name:
        yield name


@pytest.fixture(scope="session")
def node_helm(helm: Helm, kube_node: KubeNode) -> Helm:
    return helm.with_kubeconfig(kube_node.cluster.kubeconfig)
