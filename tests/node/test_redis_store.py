"""A MemoryStore on Redis with two replicas, on the real node: redis-server runs on the host,
bound to the pod bridge's gateway address (the only address pods reach besides each
other), with a password the chart keeps in a Secret. One store serves every test of this
module, in order: they leave it with two Ready replicas.

- A client pod (the image's own ``memstore`` CLI) writes through the store's Service, by its
  cluster DNS name, and reads the entity back from each replica by pod address: whichever
  replica took the write, the other one serves what it wrote. Both replicas became Ready
  through the kubelet's readiness probe, and each counts the probe calls in its metrics.
- A replica's process is stopped (SIGSTOP through containerd): the kubelet's readiness
  probe turns the pod NotReady, its liveness probe restarts the container, and the pod is
  Ready again with nobody touching it.
- ``helm upgrade`` with a changed value rolls both replicas, and deleting a replica gets it
  replaced, while a load pod calls the Service: no request fails.

The figures (times, request counts) are printed; ``pytest -rP`` shows them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.node.conftest import (
    diagnostics,
    image_sets,
    install,
    new_namespace,
    ready,
    readyz_calls,
    store_pods,
    wait_store_ready,
)
from tests.servers.node import GATEWAY, KubeNode, image_ref
from tests.support.waiting import wait_for
from tools.chartgen import CHART


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


#: Fast probes for this module's store, so a hung process is caught in seconds: a check
#: every 2 s (2 s to answer); readiness fails after 2 failed checks, liveness after 3.
FAST_PROBES = tuple(
    f"memoryStore.spec.probes.{probe}.{key}={value}"
    for probe, threshold in (("readiness", 2), ("liveness", 3))
    for key, value in (
        ("periodSeconds", 2),
        ("timeoutSeconds", 2),
        ("failureThreshold", threshold),
        ("initialDelaySeconds", 1),
    )
)


@dataclass(frozen=True)
class RedisStore:
    namespace: str
    release: str
    name: str


def _two_ready(node: KubeNode, store: RedisStore) -> list[dict[str, Any]] | None:
    """The two replicas once both are Ready and nothing else (no pod still terminating)."""
    current = store_pods(node, store.namespace, store.name)
    up = [p for p in current if ready(p) and not p["metadata"].get("deletionTimestamp")]
    return up if len(up) == 2 and len(current) == 2 else None


def _replicas(node: KubeNode, store: RedisStore) -> list[dict[str, Any]]:
    try:
        return wait_for(lambda: _two_ready(node, store), "two Ready replicas", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnostics(node, store.namespace)}") from None


@pytest.fixture(scope="module")
def redis_store(
    kube_node: KubeNode, node_helm: Helm, host_redis: tuple[int, str]
) -> Iterator[RedisStore]:
    port, password = host_redis
    with new_namespace(kube_node) as namespace:
        store = RedisStore(namespace, "red", "red-memstore")
        sets = (
            *image_sets(),
            *FAST_PROBES,
            "memoryStore.spec.replicas=2",
            "memoryStore.spec.backend.type=redis",
            f"memoryStore.spec.backend.redis.host={GATEWAY}",
            f"memoryStore.spec.backend.redis.port={port}",
            f"memoryStore.credentials.redisPassword={password}",
        )
        install(kube_node, node_helm, namespace, store.release, sets)
        wait_store_ready(kube_node, namespace, store.name)
        _replicas(kube_node, store)
        yield store


def _pod(name: str, store: str, command: list[str]) -> dict[str, Any]:
    """A pod of the image under test running ``command``, with the store's Service URL and
    token in its environment (restricted Pod Security Standard)."""
    repository, tag = image_ref()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
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
                    "command": command,
                    "env": [
                        {"name": "SERVICE_URL", "value": f"http://{store}:8080"},
                        {"name": "SERVICE_HOST", "value": store},
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


def _client_pod(name: str, store: str, targets: list[str]) -> dict[str, Any]:
    """A pod that writes through the Service, then reads from each target URL."""
    script = (
        "set -e\n"
        'memstore --url "$SERVICE_URL" entity put user ada \'{"name": "Ada"}\'\n'
        'for url in "$@"; do\n'
        '  echo "read via $url"; memstore --url "$url" entity get user ada\n'
        "done\n"
    )
    return _pod(name, store, ["sh", "-c", script, "client", *targets])


def test_redis_store_two_replicas_share_writes(
    kube_node: KubeNode, redis_store: RedisStore
) -> None:
    namespace, store = redis_store.namespace, redis_store.name
    replicas = _replicas(kube_node, redis_store)
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


def _condition_time(pod: dict[str, Any], kind: str) -> datetime:
    (cond,) = [c for c in pod["status"]["conditions"] if c["type"] == kind]
    return datetime.fromisoformat(cond["lastTransitionTime"])


def test_hung_process_is_restarted_by_its_liveness_probe(
    kube_node: KubeNode, redis_store: RedisStore
) -> None:
    namespace = redis_store.namespace
    replicas = _replicas(kube_node, redis_store)
    pod = replicas[0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    (status,) = pod["status"]["containerStatuses"]
    restarts = status["restartCount"]
    container_id = status["containerID"].removeprefix("containerd://")

    def get() -> dict[str, Any]:
        found: dict[str, Any] = kube_node.kubectl_json("get", "pod", name, "-n", namespace)
        return found

    # The service's process (the container's init) stops: it holds its socket but answers
    # nothing, as a deadlocked process would.
    stopped = time.monotonic()
    kube_node.ctr("tasks", "kill", "--signal", "SIGSTOP", container_id)

    def not_ready() -> dict[str, Any] | None:
        current = get()
        return None if ready(current) else current

    def restarted_and_ready() -> dict[str, Any] | None:
        current = get()
        again = current["status"]["containerStatuses"][0]["restartCount"] > restarts
        return current if again and ready(current) else None

    unready = wait_for(not_ready, "the pod NotReady", timeout=60)
    to_unready = time.monotonic() - stopped
    # Nobody resumes it: the kubelet restarts the container and the probes make it Ready.
    recovered = wait_for(restarted_and_ready, "the pod restarted and Ready again", timeout=120)
    to_ready = time.monotonic() - stopped
    assert recovered["metadata"]["uid"] == uid  # the same pod, its container restarted
    assert recovered["status"]["containerStatuses"][0]["restartCount"] == restarts + 1
    events = kube_node.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    messages = [(e["reason"], e["message"]) for e in events]
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed") for r, m in messages), (
        messages
    )
    assert any(r == "Unhealthy" and m.startswith("Readiness probe failed") for r, m in messages), (
        messages
    )
    assert any(r == "Killing" and "failed liveness probe" in m for r, m in messages), messages
    unready_at = _condition_time(unready, "Ready")
    ready_at = _condition_time(recovered, "Ready")
    print(
        f"liveness: NotReady {to_unready:.1f} s after SIGSTOP, Ready again (restarted) after "
        f"{to_ready:.1f} s; kubelet's Ready condition: NotReady for "
        f"{(ready_at - unready_at).total_seconds():.0f} s"
    )
    wait_for(lambda: _two_ready(kube_node, redis_store), "two Ready replicas", timeout=60)


#: A load generator: one request after another through the Service (a new connection each,
#: so kube-proxy picks a replica every time), alternately writing a key and reading it back.
#: One line per request: the time, "ok" or "fail" and why.
LOAD_SCRIPT = """
import http.client, json, os, time
host, token = os.environ["SERVICE_HOST"], os.environ["MEMSTORE_TOKEN"]
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
i = 0
while True:
    i += 1
    path = "/v1/namespaces/load/entities/item/k%d" % (i % 20)
    for method, body in (("PUT", json.dumps({"data": {"n": i}})), ("GET", None)):
        started = time.time()
        conn = http.client.HTTPConnection(host, 8080, timeout=5)
        try:
            conn.request(method, path, body, headers)
            answer = conn.getresponse()
            answer.read()
            outcome = "ok" if answer.status < 300 else "fail %s %d" % (method, answer.status)
        except Exception as exc:
            outcome = "fail %s %r" % (method, exc)
        finally:
            conn.close()
        print("%.3f %s" % (started, outcome), flush=True)
    time.sleep(0.02)
"""


@dataclass
class Load:
    """What the load pod logged: its requests as (time, outcome)."""

    node: KubeNode
    namespace: str
    pod: str

    def requests(self) -> list[tuple[float, str]]:
        out = self.node.cluster.kubectl("logs", self.pod, "-n", self.namespace).stdout
        lines = [line.split(" ", 1) for line in out.splitlines() if line.strip()]
        return [(float(t), outcome) for t, outcome in lines]

    def between(self, start: float, end: float) -> tuple[int, list[tuple[float, str]]]:
        """How many requests started in [start, end], and those that failed."""
        window = [(t, o) for t, o in self.requests() if start <= t <= end]
        return len(window), [(t, o) for t, o in window if o != "ok"]


@contextlib.contextmanager
def _load(node: KubeNode, store: RedisStore) -> Iterator[Load]:
    name = f"load-{uuid.uuid4().hex[:6]}"
    pod = _pod(name, store.name, ["python", "-c", LOAD_SCRIPT])
    node.cluster.kubectl("apply", "-n", store.namespace, "-f", "-", input=json.dumps(pod))
    load = Load(node, store.namespace, name)
    try:
        wait_for(
            lambda: len([o for _, o in load.requests() if o == "ok"]) >= 20,
            "the load pod's first requests",
            timeout=90,
        )
        yield load
    finally:
        node.cluster.kubectl("delete", "pod", name, "-n", store.namespace, "--wait=false")


def _under_load(
    node: KubeNode, store: RedisStore, disrupt: Callable[[], None], what: str
) -> tuple[float, int, list[tuple[float, str]]]:
    """Run ``disrupt`` while the load pod calls the Service, wait until two new replicas
    are Ready (and the old ones gone), and keep the load on 2 s more. Returns the seconds
    until then, the requests made in that time and the ones that failed."""
    before = {p["metadata"]["name"] for p in store_pods(node, store.namespace, store.name)}
    with _load(node, store) as load:
        time.sleep(2)
        start = time.time()
        disrupt()

        def replaced() -> list[dict[str, Any]] | None:
            up = _two_ready(node, store)
            names = {p["metadata"]["name"] for p in up or []}
            return up if up and names != before else None

        try:
            wait_for(replaced, what, timeout=180)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnostics(node, store.namespace)}") from None
        took = time.time() - start
        time.sleep(2)
        made, failed = load.between(start - 2, time.time())
    return took, made, failed


def test_helm_upgrade_rolls_the_replicas_without_failed_requests(
    kube_node: KubeNode, node_helm: Helm, redis_store: RedisStore
) -> None:
    namespace, store = redis_store.namespace, redis_store.name
    budget = kube_node.kubectl_json("get", "pdb", store, "-n", namespace)
    assert budget["spec"]["maxUnavailable"] == 1
    old = {p["metadata"]["name"] for p in store_pods(kube_node, namespace, store)}

    def upgrade() -> None:
        args = [
            "upgrade", redis_store.release, str(CHART), "-n", namespace, "--reuse-values",
            "--set", "memoryStore.spec.cache.ttlSeconds=7", "--wait", "--timeout", "3m",
        ]  # fmt: skip
        out = node_helm.run(*args, check=False)
        assert out.returncode == 0, f"helm upgrade failed:\n{out.stderr}"

    took, made, failed = _under_load(kube_node, redis_store, upgrade, "the rolled replicas")
    new = {p["metadata"]["name"] for p in store_pods(kube_node, namespace, store)}
    print(f"helm upgrade roll: {took:.1f} s, {made} requests, {len(failed)} failed: {failed[:5]}")
    assert not new & old, (old, new)  # both replicas were replaced
    assert made >= 20, made  # the load ran through the roll
    assert failed == [], failed


def test_deleted_replica_is_replaced_without_failed_requests(
    kube_node: KubeNode, redis_store: RedisStore
) -> None:
    namespace, store = redis_store.namespace, redis_store.name
    replicas = _replicas(kube_node, redis_store)
    victim = replicas[0]["metadata"]["name"]

    def delete() -> None:
        kube_node.cluster.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")

    took, made, failed = _under_load(kube_node, redis_store, delete, "a replacement replica")
    names = {p["metadata"]["name"] for p in store_pods(kube_node, namespace, store)}
    print(
        f"pod deleted: 2 Ready after {took:.1f} s, {made} requests, {len(failed)} failed: "
        f"{failed[:5]}"
    )
    assert victim not in names
    assert made >= 20, made
    assert failed == [], failed
