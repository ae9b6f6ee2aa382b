"""A MemoryStore on Redis with two replicas, on the real node: redis-server runs on the host,
bound to the pod bridge's gateway address (the only address pods reach besides each
other), with a password the chart keeps in a Secret.

A client pod (the image's own ``memstore`` CLI) writes through the store's Service, by its
cluster DNS name, and reads the entity back from each replica by pod address: whichever
replica took the write, the other one serves what it wrote. Both replicas became Ready
through the kubelet's readiness probe, and each counts the probe calls in its metrics.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.node.conftest import (
    diagnostics,
    image_sets,
    install,
    ready,
    readyz_calls,
    store_pods,
    wait_store_ready,
)
from tests.servers.node import GATEWAY, KubeNode, image_ref
from tests.support.waiting import wait_for


def _free_port_on(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def host_redis(
    kube_node: KubeNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, str]]:
    """redis-server on the bridge's gateway address: (port, password)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: run `make tools` (mk/redis.mk installs it)")
    port, password = _free_port_on(GATEWAY), uuid.uuid4().hex
    d = tmp_path_factory.mktemp("host-redis")
    log = (d / "redis.log").open("wb")
    proc = subprocess.Popen(
        [
            server, "--bind", GATEWAY, "--port", str(port), "--requirepass", password,
            "--save", "", "--appendonly", "no", "--dir", str(d),
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def listening() -> bool:
            with socket.create_connection((GATEWAY, port), timeout=1):
                return True

        wait_for(listening, "redis-server on the gateway address", timeout=30)
        yield port, password
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def _client_pod(name: str, store: str, targets: list[str]) -> dict[str, Any]:
    """A pod that writes through the Service, then reads from each target URL."""
    repository, tag = image_ref()
    script = (
        "set -e\n"
        'memstore --url "$SERVICE_URL" entity put user ada \'{"name": "Ada"}\'\n'
        'for url in "$@"; do\n'
        '  echo "read via $url"; memstore --url "$url" entity get user ada\n'
        "done\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "client",
                    "image": f"{repository}:{tag}",
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script, "client", *targets],
                    "env": [
                        {"name": "SERVICE_URL", "value": f"http://{store}:8080"},
                        {"name": "MEMORY_NAMESPACE", "value": "node-e2e"},
                        {
                            "name": "MEMSTORE_TOKEN",
                            "valueFrom": {
                                "secretKeyRef": {"name": f"{store}-auth", "key": "token"}
                            },
                        },
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def test_redis_store_two_replicas_share_writes(
    kube_node: KubeNode,
    node_helm: Helm,
    namespace: str,
    host_redis: tuple[int, str],
    tmp_path: Path,
) -> None:
    port, password = host_redis
    release = "red"
    store = f"{release}-memstore"
    install(
        kube_node,
        node_helm,
        namespace,
        release,
        (
            *image_sets(),
            "memoryStore.spec.replicas=2",
            "memoryStore.spec.backend.type=redis",
            f"memoryStore.spec.backend.redis.host={GATEWAY}",
            f"memoryStore.spec.backend.redis.port={port}",
            f"memoryStore.credentials.redisPassword={password}",
        ),
    )
    wait_store_ready(kube_node, namespace, store)

    def two_ready() -> list[dict[str, Any]] | None:
        up = [p for p in store_pods(kube_node, namespace, store) if ready(p)]
        return up if len(up) == 2 else None

    replicas = wait_for(two_ready, "two Ready replicas", timeout=120)
    # Both replicas were made Ready by the kubelet's probe, and served it.
    for pod in replicas:
        assert readyz_calls(kube_node, namespace, pod["metadata"]["name"]) >= 1

    targets = [f"http://{p['status']['podIP']}:8080" for p in replicas]
    client = _client_pod("client", store, targets)
    kube_node.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(client))

    def finished() -> str | None:
        phase = kube_node.kubectl_json("get", "pod", "client", "-n", namespace)["status"]
        return phase.get("phase") if phase.get("phase") in ("Succeeded", "Failed") else None

    phase = wait_for(finished, "the client pod to finish", timeout=120)
    logs = kube_node.cluster.kubectl("logs", "client", "-n", namespace, check=False)
    assert phase == "Succeeded", f"{logs.stdout}{logs.stderr}\n{diagnostics(kube_node, namespace)}"
    out = logs.stdout
    for url in targets:
        section = out.split(f"read via {url}\n", 1)[1].split("read via ", 1)[0]
        assert json.loads(section)["data"] == {"name": "Ada"}, out
