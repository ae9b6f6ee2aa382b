"""Backups and restores on the real node (tests/servers/node.py): the operator's Jobs run
the image's ``memstore export`` / ``memstore import`` against a store's Service, writing
to and reading from a PersistentVolumeClaim (a hostPath volume the test also reads).

One test, in order: the chart installs an embedded store; a client pod writes entities,
a conversation and tool uses in two namespaces; a MemoryStoreBackup completes (its dump
files are on the volume, sizes in its status); the data is deleted; a
MemoryStoreRestore (replace) brings every record back as it was (ids, versions, times);
a second restore loads the same backup into a store on another backend (Redis on the
host) and it serves the same records. A second test: a schedule firing every minute
(plus once at creation) with keep 2 leaves the two newest backups, the oldest one's
directory removed from the volume. The figures are printed (``pytest -rP``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import Helm
from tests.node.conftest import diagnostics, image_sets, install, wait_store_ready
from tests.servers.node import GATEWAY, KubeNode, image_ref
from tests.support.waiting import wait_for

GROUP_VERSION = "memory.datamcp.io/v1alpha1"
NAMESPACES = ("team-a", "team-b")

#: Writes the data set: in each namespace two entities, a conversation of two messages
#: and two tool uses.
WRITE = """
set -e
for ns in team-a team-b; do
  memstore -n "$ns" entity put user ada '{"name": "Ada", "ns": "'"$ns"'"}'
  memstore -n "$ns" entity put user bob '{"name": "Bob", "langs": ["en", "fr"]}'
  memstore -n "$ns" conversation append c1 '{"role": "user", "content": "hi"}'
  memstore -n "$ns" conversation append c1 '{"role": "assistant", "content": "hello"}'
  memstore -n "$ns" tool record search --input '{"q": "x"}' --output '{"hits": 1}'
  memstore -n "$ns" tool record fetch --input '{"url": "u"}' --output '{"ok": true}'
done
"""
#: Prints what a namespace holds, one JSON document per marked section.
SNAPSHOT = """
set -e
for ns in team-a team-b; do
  echo "== $ns users"; memstore -n "$ns" entity list user
  echo "== $ns c1"; memstore -n "$ns" conversation show c1
  echo "== $ns tools"; memstore -n "$ns" tool list
done
"""
#: Deletes the entities and the conversation (tool uses are never deleted one by one).
DELETE = """
set -e
for ns in team-a team-b; do
  memstore -n "$ns" entity delete user ada
  memstore -n "$ns" entity delete user bob
  memstore -n "$ns" conversation delete c1
done
"""


def _pv_dir(node: KubeNode, name: str) -> Path:
    path = node.root / name
    path.mkdir()
    os.chown(path, 10001, 10001)
    return path


@contextlib.contextmanager
def bound_volume(node: KubeNode, namespace: str, claim: str) -> Iterator[Path]:
    """A hostPath PersistentVolume reserved for ``namespace/claim`` (its directory, owned
    by the pods' uid, is yielded); deleted afterwards."""
    pv = f"pv-{namespace}-{claim}"
    path = _pv_dir(node, pv)
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": namespace, "name": claim},
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }
    node.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        yield path
    finally:
        node.cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def apply(node: KubeNode, namespace: str, body: dict[str, Any]) -> None:
    node.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def client(node: KubeNode, namespace: str, store: str, script: str) -> str:
    """Run ``script`` (sh) in a pod of the image under test, with the store's Service URL
    and its generated admin token in the environment; its log, once it succeeded."""
    repository, tag = image_ref()
    name = f"client-{uuid.uuid4().hex[:6]}"
    pod = {
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
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "MEMSTORE_URL", "value": f"http://{store}:8080"},
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
    apply(node, namespace, pod)

    def finished() -> str | None:
        phase = node.kubectl_json("get", "pod", name, "-n", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, f"the client pod {name} to finish", timeout=120)
    logs = node.cluster.kubectl("logs", name, "-n", namespace, check=False)
    assert phase == "Succeeded", f"{logs.stdout}{logs.stderr}\n{diagnostics(node, namespace)}"
    node.cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false", check=False)
    return str(logs.stdout)


def snapshot(node: KubeNode, namespace: str, store: str) -> dict[str, Any]:
    out = client(node, namespace, store, SNAPSHOT)
    sections: dict[str, Any] = {}
    for part in out.split("== ")[1:]:
        title, _, body = part.partition("\n")
        sections[title] = json.loads(body)
    return sections


def get(node: KubeNode, namespace: str, plural: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = node.kubectl_json("get", plural, name, "-n", namespace)
    return found


def wait_phase(
    node: KubeNode, namespace: str, plural: str, name: str, phase: str, timeout: float = 180
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status: dict[str, Any] = get(node, namespace, plural, name).get("status") or {}
        if status.get("phase") == "Failed" and phase != "Failed":
            raise AssertionError(f"{plural} {name} failed: {status}")
        return status if status.get("phase") == phase else None

    try:
        return wait_for(reached, f"{plural} {name} {phase}", timeout=timeout)
    except AssertionError as exc:
        status = get(node, namespace, plural, name).get("status")
        raise AssertionError(f"{exc}\n{status}\n{diagnostics(node, namespace)}") from None


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _free_port_on(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def host_redis(tmp: Path) -> Iterator[tuple[int, str]]:
    """redis-server on the bridge's gateway address (the address pods reach): (port,
    password)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: run `make tools` (mk/redis.mk installs it)")
    port, password = _free_port_on(GATEWAY), uuid.uuid4().hex
    with (tmp / "redis.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                server, "--bind", GATEWAY, "--port", str(port), "--requirepass", password,
                "--save", "", "--appendonly", "no", "--dir", str(tmp),
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


@pytest.fixture
def installed(kube_node: KubeNode, node_helm: Helm, namespace: str) -> Iterator[tuple[str, Path]]:
    """The chart with its embedded store (on a volume of its own) and a claim `backups`
    for the dumps: (the store's name, the backups volume's directory on the host)."""
    release = "bk"
    store = f"{release}-memstore"
    with (
        bound_volume(kube_node, namespace, f"{store}-data"),
        bound_volume(kube_node, namespace, "backups") as backups,
    ):
        install(kube_node, node_helm, namespace, release, image_sets())
        wait_store_ready(kube_node, namespace, store)
        apply(kube_node, namespace, claim("backups"))
        yield store, backups


def test_backup_delete_restore_and_restore_onto_redis(
    kube_node: KubeNode,
    namespace: str,
    installed: tuple[str, Path],
    tmp_path: Path,
) -> None:
    store, volume = installed
    started = time.monotonic()
    client(kube_node, namespace, store, WRITE)
    before = snapshot(kube_node, namespace, store)
    assert [e["id"] for e in before["team-a users"]["items"]] == ["ada", "bob"], before
    assert len(before["team-b c1"]) == 2, before
    assert len(before["team-b tools"]["items"]) == 2, before

    # The backup: a Job of the store's image writes one dump per namespace on the claim.
    apply(
        kube_node,
        namespace,
        resource(
            "MemoryStoreBackup",
            "b1",
            {
                "memoryStore": {"name": store},
                "destination": {"persistentVolumeClaim": {"claimName": "backups", "path": "ms"}},
            },
        ),
    )
    t0 = time.monotonic()
    backup = wait_phase(kube_node, namespace, "memorystorebackups", "b1", "Completed")
    backup_wall = time.monotonic() - t0
    files = sorted(p.name for p in (volume / "ms" / "b1").iterdir())
    assert files == [f"{ns}.jsonl" for ns in NAMESPACES], files
    on_disk = sum((volume / "ms" / "b1" / f).stat().st_size for f in files)
    assert backup["sizeBytes"] == on_disk > 0
    assert backup["namespaces"] == 2
    assert backup["backend"] == "embedded"
    assert backup["durationSeconds"] >= 0
    # The token is read from the Secret into the Job's environment, nowhere else.
    token = base64.b64decode(
        kube_node.kubectl_json("get", "secret", f"{store}-auth", "-n", namespace)["data"]["token"]
    ).decode()
    job = kube_node.cluster.kubectl("get", "job", "b1-backup", "-n", namespace, "-o", "json")
    assert token not in job.stdout
    assert token not in json.dumps(get(kube_node, namespace, "memorystorebackups", "b1"))
    assert token not in "".join((volume / "ms" / "b1" / f).read_text() for f in files)

    # The data goes, and comes back from the backup as it was.
    client(kube_node, namespace, store, DELETE)
    gone = client(kube_node, namespace, store, 'memstore -n team-a entity list user; echo "rc=$?"')
    assert '"items": []' in gone or '"items":[]' in gone, gone
    apply(
        kube_node,
        namespace,
        resource(
            "MemoryStoreRestore",
            "r1",
            {"memoryStore": {"name": store}, "source": {"backup": {"name": "b1"}}, "replace": True},
        ),
    )
    t0 = time.monotonic()
    restored = wait_phase(kube_node, namespace, "memorystorerestores", "r1", "Completed")
    restore_wall = time.monotonic() - t0
    assert restored["namespaces"] == 2 and restored["sizeBytes"] == on_disk
    after = snapshot(kube_node, namespace, store)
    assert after == before

    # The same backup into a store on Redis: the dump does not depend on the backend.
    with host_redis(tmp_path) as (port, password):
        kube_node.cluster.kubectl(
            "create", "secret", "generic", "redis-password", "-n", namespace,
            f"--from-literal=password={password}",
        )  # fmt: skip
        repository, tag = image_ref()
        red = {
            "image": f"{repository}:{tag}",
            "imagePullPolicy": "Never",
            "backend": {
                "type": "redis",
                "redis": {
                    "host": GATEWAY,
                    "port": port,
                    "passwordSecretRef": {"name": "redis-password", "key": "password"},
                },
            },
        }
        apply(kube_node, namespace, resource("MemoryStore", "red", red))
        # Applied at once: the restore waits for its store to be Ready.
        apply(
            kube_node,
            namespace,
            resource(
                "MemoryStoreRestore",
                "r2",
                {"memoryStore": {"name": "red"}, "source": {"backup": {"name": "b1"}}},
            ),
        )
        wait_store_ready(kube_node, namespace, "red")
        onto_redis = wait_phase(kube_node, namespace, "memorystorerestores", "r2", "Completed")
        assert (onto_redis["sourceBackend"], onto_redis["backend"]) == ("embedded", "redis")
        assert snapshot(kube_node, namespace, "red") == before
    print(
        f"backup of 2 namespaces ({on_disk} bytes): Completed {backup_wall:.1f} s after apply "
        f"(Job {backup['durationSeconds']:.0f} s); restore: {restore_wall:.1f} s "
        f"(Job {restored['durationSeconds']:.0f} s); whole test {time.monotonic() - started:.0f} s"
    )


def test_schedule_keeps_the_newest_backups(
    kube_node: KubeNode, namespace: str, installed: tuple[str, Path]
) -> None:
    store, volume = installed
    client(kube_node, namespace, store, WRITE)
    started = time.monotonic()
    # Every minute, and once at creation; keep 1: the second backup makes the first go.
    apply(
        kube_node,
        namespace,
        resource(
            "MemoryStoreScheduledBackup",
            "often",
            {
                "schedule": "* * * * *",
                "immediate": True,
                "keep": 1,
                "memoryStore": {"name": store},
                "destination": {"persistentVolumeClaim": {"claimName": "backups"}},
            },
        ),
    )
    created: list[str] = []

    def backups() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kube_node.kubectl_json(
            "get", "memorystorebackups", "-n", namespace,
            "-l", "memory.datamcp.io/scheduled-backup=often",
        )["items"]  # fmt: skip
        for b in items:
            if b["metadata"]["name"] not in created:
                created.append(b["metadata"]["name"])
        return items

    def pruned() -> list[dict[str, Any]] | None:
        items = backups()
        done = [b for b in items if (b.get("status") or {}).get("phase") == "Completed"]
        return items if len(created) >= 2 and len(items) == 1 and len(done) == 1 else None

    try:
        kept = wait_for(pruned, "two scheduled backups, one kept", timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{created}\n{diagnostics(kube_node, namespace)}") from None
    first = sorted(created)[0]
    assert first not in [b["metadata"]["name"] for b in kept]
    # The oldest one's files went with it; the kept ones' are there.
    on_disk = sorted(p.name for p in volume.iterdir())
    assert first not in on_disk, on_disk
    for b in kept:
        assert (volume / b["metadata"]["name"] / "team-a.jsonl").stat().st_size > 0
    status = get(kube_node, namespace, "memorystorescheduledbackups", "often")["status"]
    assert status["lastSuccessfulBackup"] == max(b["metadata"]["name"] for b in kept)
    assert status["lastSuccessTime"]
    print(
        f"schedule: {len(created)} backups created in {time.monotonic() - started:.0f} s, "
        f"kept {sorted(b['metadata']['name'] for b in kept)}, deleted {first} and its files"
    )
