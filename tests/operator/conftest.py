"""Fixtures for the operator tests: the CRD installed in the real apiserver
(tests/servers/kube.py) and the operator running as a subprocess (``memstore operator``)
with that cluster's kubeconfig."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.kube import KubeAPI, free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "charts" / "memstore" / "crds"
CRD_FILE = CRD_DIR / "memorystores.memory.datamcp.io.yaml"
GROUP, VERSION, PLURAL = "memory.datamcp.io", "v1alpha1", "memorystores"


@pytest.fixture(scope="session")
def crd(kube_api: KubeAPI) -> Path:
    cluster = kube_api.cluster
    # Every CRD of the chart: MemoryStore and the backup and restore kinds.
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    for path in sorted(CRD_DIR.glob("*.yaml")):
        name = path.name.removesuffix(".yaml")
        wait_for(
            lambda n=name: (
                cluster.kubectl(
                    "get", f"crd/{n}", "-o", f"jsonpath={jsonpath}", check=False
                ).stdout.strip()
                == "True"
            ),
            what=f"the CRD {name} to be Established",
        )
    # Discovery of the new kinds can lag the Established condition a little.
    for short in ("ms", "msb", "mssb", "msr"):
        wait_for(
            lambda s=short: cluster.kubectl("get", s, "-A", check=False).returncode == 0,
            what=f"the {short} kind in discovery",
        )
    return CRD_FILE


@dataclass
class Standby:
    """An operator process that has done its imports and waits for a line on stdin
    (``slow_writes.py --standby``), with what it was started with."""

    proc: subprocess.Popen[bytes]
    metrics_port: int
    extra_env: dict[str, str]
    write_delay: float

    def discard(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # end of input: it exits without running
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@dataclass
class OperatorProcess:
    kube: KubeAPI
    log_dir: Path
    liveness_port: int
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    write_delay: float = 0.0
    standby: Standby | None = None

    def start(
        self,
        extra_env: dict[str, str] | None = None,
        write_delay: float = 0.0,
        *,
        keep_standby: bool = False,
    ) -> None:
        """Start ``memstore operator`` (the CLI entry) (``extra_env`` is kept for restarts until
        the next start that passes one). With ``write_delay`` the operator pauses that long
        before every write to the API server (``tests/operator/slow_writes.py``).

        ``keep_standby`` (with ``write_delay``): once this operator is live, start the next
        one up to its imports, waiting (``slow_writes.py --standby``); the next ``start`` with
        the same settings lets it run instead of starting a process from nothing."""
        if extra_env is not None:
            self.extra_env = dict(extra_env)
        self.write_delay = write_delay
        self.starts += 1
        standby, self.standby = self.standby, None
        if standby is not None and (standby.extra_env, standby.write_delay) != (
            self.extra_env,
            write_delay,
        ):
            standby.discard()
            standby = None
        if standby is not None and standby.proc.poll() is None:
            assert standby.proc.stdin is not None
            standby.proc.stdin.write(b"go\n")
            standby.proc.stdin.close()
            self.proc, self.metrics_port = standby.proc, standby.metrics_port
        else:
            self.metrics_port = free_port()
            self.proc = self._spawn(self.starts, self.metrics_port, standby=False)
        self._wait_alive()
        if keep_standby and write_delay:
            port = free_port()
            self.standby = Standby(
                self._spawn(self.starts + 1, port, standby=True),
                port,
                dict(self.extra_env),
                write_delay,
            )

    def _spawn(self, number: int, metrics_port: int, *, standby: bool) -> subprocess.Popen[bytes]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "MEMSTORE_", "PYTHONWARNINGS"))
        }
        env.update(
            KUBECONFIG=str(self.kube.kubeconfig),
            MEMSTORE_OPERATOR_RESYNC_SECONDS="1",
            MEMSTORE_OPERATOR_RETRY_SECONDS="1",
            MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS="1",
            MEMSTORE_OPERATOR_LIVENESS=f"http://127.0.0.1:{self.liveness_port}/healthz",
            MEMSTORE_OPERATOR_METRICS_PORT=str(metrics_port),
            MEMSTORE_OPERATOR_METRICS_ADDR="127.0.0.1",
            MEMSTORE_OPERATOR_NAMESPACES="",
            # Short server-side watch timeouts: every test also exercises watch restarts.
            MEMSTORE_OPERATOR_WATCH_TIMEOUT="10",
        )
        env.update(self.extra_env)
        command = [sys.executable, "-m", "memstore", "operator"]
        if self.write_delay:
            command = [sys.executable, "-m", "tests.operator.slow_writes", str(self.write_delay)]
            if standby:
                command.append("--standby")
        with (self.log_dir / f"operator-{number}.log").open("wb") as log:
            return subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE if standby else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_alive(self) -> None:
        def alive() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log_tail()}")
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)

        wait_for(alive, what="the operator's liveness endpoint")

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def log_tail(self, n: int = 60) -> str:
        path = self.log_dir / f"operator-{self.starts}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.standby is not None:
            self.standby.discard()
            self.standby = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def operator_proc(
    crd: Path, kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kube_api, tmp_path_factory.mktemp("operator"), free_port())
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def op(operator_proc: OperatorProcess) -> OperatorProcess:
    """The running operator with the default settings (restarted if a previous test
    killed it or ran it with other settings)."""
    if operator_proc.extra_env or operator_proc.write_delay:
        operator_proc.stop()
        operator_proc.extra_env = {}
        operator_proc.write_delay = 0.0
    if operator_proc.proc is None or operator_proc.proc.poll() is not None:
        operator_proc.start()
    return operator_proc


# --- helpers for the tests ---------------------------------------------------------


class Cluster:
    """Typed shortcuts over the kubernetes client and kubectl, for one namespace."""

    def __init__(self, kube: KubeAPI, namespace: str) -> None:
        from kubernetes import client

        self.kube = kube
        self.ns = namespace
        self.core = client.CoreV1Api(kube.api_client)
        self.apps = client.AppsV1Api(kube.api_client)
        self.policy = client.PolicyV1Api(kube.api_client)
        self.custom = client.CustomObjectsApi(kube.api_client)
        self.api = kube.api_client

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.kube.cluster.kubectl("-n", self.ns, *args, input=input, check=check)

    def apply(self, name: str, spec: dict[str, Any], check: bool = True) -> Any:
        doc = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "MemoryStore",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }
        return self.kubectl("apply", "-f", "-", input=json.dumps(doc), check=check)

    def store(self, name: str) -> dict[str, Any]:
        out = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        assert isinstance(out, dict)
        return out

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        for cond in (self.store(name).get("status") or {}).get("conditions") or []:
            if cond.get("type") == ctype:
                return dict(cond)
        return None

    def obj(self, kind: str, name: str) -> dict[str, Any] | None:
        """A child as a plain dict (None when absent)."""
        from kubernetes.client.exceptions import ApiException

        readers = {
            "ConfigMap": self.core.read_namespaced_config_map,
            "Secret": self.core.read_namespaced_secret,
            "Service": self.core.read_namespaced_service,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
            "Deployment": self.apps.read_namespaced_deployment,
            "PodDisruptionBudget": self.policy.read_namespaced_pod_disruption_budget,
        }
        try:
            got = readers[kind](name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out: dict[str, Any] = self.api.sanitize_for_serialization(got)
        return out

    def listing(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        listers = {
            "ConfigMap": self.core.list_namespaced_config_map,
            "Secret": self.core.list_namespaced_secret,
            "Service": self.core.list_namespaced_service,
            "PersistentVolumeClaim": self.core.list_namespaced_persistent_volume_claim,
            "Deployment": self.apps.list_namespaced_deployment,
            "ReplicaSet": self.apps.list_namespaced_replica_set,
            "Pod": self.core.list_namespaced_pod,
            "PodDisruptionBudget": self.policy.list_namespaced_pod_disruption_budget,
        }
        got = listers[kind](self.ns, label_selector=selector)
        out: list[dict[str, Any]] = self.api.sanitize_for_serialization(got)["items"]
        return out

    def mark_pods_ready(self, selector: str) -> int:
        """Play the kubelet (there is none): mark the store's pods Running and Ready, so
        the ReplicaSet and Deployment controllers count them as ready and available."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pods = [
            p for p in self.listing("Pod", selector) if not p["metadata"].get("deletionTimestamp")
        ]
        for pod in pods:
            conds = [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ]
            self.core.patch_namespaced_pod_status(
                pod["metadata"]["name"],
                self.ns,
                {"status": {"phase": "Running", "conditions": conds, "startTime": now}},
            )
        return len(pods)


def store_selector(name: str) -> str:
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/name=memstore"


# --- a real redis-server for the backend checks --------------------------------------


@dataclass
class RedisProcess:
    port: int
    password: str | None
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is missing: run `make tools`")
        args = [
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        with (self.workdir / f"redis-{self.port}.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_for(up, timeout=30, what="redis-server")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    started: list[RedisProcess] = []

    def make(port: int | None = None, password: str | None = None) -> RedisProcess:
        r = RedisProcess(port or free_port(), password, tmp_path).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()
