"""A real Kubernetes control plane for the operator tests, started the way
controller-runtime's envtest does it: etcd + kube-apiserver (+ kube-controller-manager
for ReplicaSets, garbage collection, namespaces and service accounts), no kubelet and no
scheduler, so pods stay Pending unless a test marks them Ready itself.

Binaries: built by mk/k8s.mk into $KUBE_TOOLS_DIR (default
$TOOLS_DIR/k8s-v1.30.14); etcd from Debian's etcd-server. Certificates come from the
openssl CLI: a throw-away CA, a serving cert for 127.0.0.1, a client cert for user
"admin" in group system:masters, and a service-account signing key pair.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

K8S_VERSION = "v1.30.14"
CONTROLLERS = (
    "deployment,replicaset,garbagecollector,namespace,serviceaccount,"
    "serviceaccount-token,disruption,pvc-protection,job"
)


def kube_bin_dir() -> Path:
    explicit = os.environ.get("KUBE_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    tools = os.environ.get("TOOLS_DIR") or str(Path.home() / ".cache" / "memstore-tools")
    return Path(tools) / f"k8s-{K8S_VERSION}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


API_SANS = "IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"


def make_leaf(d: Path, name: str, subj: str, ext: str) -> None:
    """A key and a certificate signed by the CA in ``d`` (``ext``: its X.509 extensions)."""
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", subj,
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


def make_pki(d: Path, api_sans: str = API_SANS) -> None:
    """CA, apiserver serving cert (``api_sans``: its subjectAltName), admin client cert,
    service-account key pair."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=memstore-test-ca",
        cwd=d,
    )  # fmt: skip
    make_leaf(
        d,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={api_sans}\n",
    )
    make_leaf(
        d,
        "admin",
        "/O=system:masters/CN=admin",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: test
  context: {{cluster: test, user: admin}}
current-context: test
"""
    )


@dataclass
class KubeCluster:
    server: str
    kubeconfig: Path
    bin_dir: Path
    pki: Path
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; output captured as text."""
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def start_process(name: str, argv: list[str], logs: Path) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_process(
    name: str, proc: subprocess.Popen[bytes], ok: Any, logs: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{tail(logs / f'{name}.log')}")
        with contextlib.suppress(Exception):
            if ok():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{name} not ready in {timeout}s:\n{tail(logs / f'{name}.log')}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    bins = kube_bin_dir()
    for b in ("kube-apiserver", "kube-controller-manager", "kubectl"):
        if not (bins / b).exists():
            pytest.fail(f"{bins / b} is missing: run `make tools` (mk/k8s.mk builds it)")
    etcd = shutil.which("etcd")
    if etcd is None:
        pytest.fail("etcd is missing: run `make tools` (installs Debian's etcd-server)")
    root = tmp_path_factory.mktemp("kube")
    pki, logs = root / "pki", root / "logs"
    logs.mkdir()
    make_pki(pki)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    cluster = KubeCluster(server, root / "kubeconfig", bins, pki, logs)
    write_kubeconfig(cluster.kubeconfig, server, pki)
    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        cluster.procs["etcd"] = start_process(
            "etcd",
            [
                etcd, f"--data-dir={root / 'etcd'}", "--name=default",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}", "--log-level=warn",
                "--quota-backend-bytes=1073741824",
            ],
            logs,
        )  # fmt: skip

        def etcd_ready() -> bool:
            with urllib.request.urlopen(f"{etcd_url}/health", timeout=2) as r:
                return bool(r.status == 200)

        wait_process("etcd", cluster.procs["etcd"], etcd_ready, logs)
        cluster.procs["kube-apiserver"] = start_process(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={root / 'certs'}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={server}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
            logs,
        )  # fmt: skip
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

        def api_ready() -> bool:
            with urllib.request.urlopen(f"{server}/readyz", context=ctx, timeout=3) as r:
                return bool(r.status == 200)

        wait_process(
            "kube-apiserver", cluster.procs["kube-apiserver"], api_ready, logs, timeout=180
        )
        kc = str(cluster.kubeconfig)
        cluster.procs["kube-controller-manager"] = start_process(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={root / 'kcm-certs'}",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs=5",
                "--v=0",
            ],
            logs,
        )

        def default_sa() -> bool:
            out = cluster.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            return out.returncode == 0

        wait_process(
            "kube-controller-manager", cluster.procs["kube-controller-manager"], default_sa, logs
        )
        yield cluster
    finally:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = cluster.procs.get(name)
            if proc is not None:
                stop_process(proc)


@dataclass
class KubeAPI:
    cluster: KubeCluster
    kubeconfig: Path
    api_client: Any  # kubernetes.client.ApiClient


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster) -> Iterator[KubeAPI]:
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    try:
        yield KubeAPI(kube_cluster, kube_cluster.kubeconfig, api_client)
    finally:
        api_client.close()


@pytest.fixture
def kube_namespace(kube_api: KubeAPI) -> Iterator[str]:
    """A fresh namespace per test, deleted (without waiting) afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api.api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name)
