"""A real Kubernetes node on this machine, for the node tests (tests/node): the pods run.

Control plane as in tests/servers/kube.py (etcd, kube-apiserver, kube-controller-manager)
plus kube-scheduler; the node is containerd (CRI, Debian's) with runc, the kubelet
(cgroupfs driver) and kube-proxy (iptables); CoreDNS answers cluster names only (no
forward plugin). Pods get addresses on a bridge this fixture creates (POD_SUBNET, CNI
``bridge`` plugin, no masquerading) and a DROP rule keeps their traffic on the machine:
pods and the host talk to each other, nothing else. The bridge's gateway address is also
the address of the apiserver, the kubelet and CoreDNS. A static hostPath PersistentVolume
lets the embedded store's claim bind.

Needs root (as CI runs). Binaries and images come from `make node-tools` (mk/node.mk).
Torn down completely at the end of the session: processes by PID, the pods' mounts and
network namespaces, the /kubepods cgroups, the KUBE-* and MEMSTORE-* iptables chains, the
bridge, and the kernel settings the kubelet and kube-proxy change. The teardown then
compares the machine with the snapshot taken before the start and fails the session if
anything is left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.kube import (
    KubeCluster,
    free_port,
    kube_bin_dir,
    make_leaf,
    make_pki,
    start_process,
    stop_process,
    tail,
    wait_process,
    write_kubeconfig,
)

BRIDGE = "msnode0"
POD_SUBNET = "10.217.0.0/24"
GATEWAY = "10.217.0.1"  # the bridge's address: apiserver, kubelet, CoreDNS, node IP
SERVICE_CIDR = "10.0.0.0/24"  # the one tests/servers/kube.py's apiserver uses
NODE_NAME = "memstore-node"
CHAIN = "MEMSTORE-NODE"  # our own iptables chain (filter table)
CLUSTER_DOMAIN = "cluster.local"
#: Kernel settings the kubelet or kube-proxy may change, or this fixture sets.
SYSCTLS = (
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
)
#: Directories the node's parts create outside the fixture's own directory.
SYSTEM_DIRS = (
    "/var/run/netns",
    "/run/containerd",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/etc/cni",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure (with check) its stderr is in the error."""
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def _read_sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            out[key] = _sysctl_path(key).read_text().strip()
    return out


def _mount_points() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines]


def _cgroup_hierarchies() -> list[Path]:
    """Every cgroup mount (each v1 hierarchy and the unified one)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            out.append(Path(fields[4]))
    return out


def _rules(tool: str) -> dict[str, list[str]]:
    out = {}
    for table in TABLES:
        res = _run(tool, "-w", "-t", table, "-S", check=False)
        if res.returncode == 0:
            out[table] = res.stdout.splitlines()
    return out


def machine_state() -> dict[str, Any]:
    """What the node may change on the machine, to compare before and after."""
    return {
        "links": sorted(
            line.split()[1].split("@")[0]
            for line in _run("ip", "-o", "link", "show").stdout.splitlines()
        ),
        "addresses": sorted(_run("ip", "-o", "addr", "show").stdout.split("\n")),
        "routes": sorted(_run("ip", "route", "show", "table", "all").stdout.splitlines()),
        "iptables": {tool: _rules(tool) for tool in IPTABLES if shutil.which(tool)},
        "mounts": sorted(_mount_points()),
        "sysctls": _read_sysctls(),
        "kubepods": sorted(str(h) for h in _cgroup_hierarchies() if (h / "kubepods").exists()),
        "dirs": sorted(d for d in SYSTEM_DIRS if os.path.lexists(d)),
        "netns": sorted(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else [],
    }


def state_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two machine_state() snapshots."""
    out = []
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], list):
                gone = sorted(set(before[key]) - set(after[key]))
                new = sorted(set(after[key]) - set(before[key]))
                out.append(f"{key}: new {new}, gone {gone}")
            else:
                out.append(f"{key}: before {before[key]!r}, after {after[key]!r}")
    return out


# ------------------------------------------------------------------------------------
# The parts of the node, each as a config file
# ------------------------------------------------------------------------------------


def containerd_config(root: Path, pause_image: str) -> str:
    # restrict_oom_score_adj: this machine's root lacks CAP_SYS_RESOURCE; without it runc
    # fails every sandbox when it lowers oom_score_adj below the shim's.
    return f"""version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{root}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{root}/cni"
"""


def cni_config(root: Path) -> dict[str, Any]:
    # ipMasq off: pods reach the host and each other only (with the DROP rule).
    return {
        "cniVersion": "1.0.0",
        "name": "memstore-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                    "dataDir": str(root / "cni-ipam"),
                },
            }
        ],
    }


def kubelet_config(root: Path, port: int, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": GATEWAY,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(root / "pki" / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(root / "pki" / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(root / "pki" / "kubelet-serving.key"),
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{root}/containerd.sock",
        "clusterDNS": [GATEWAY],
        "clusterDomain": CLUSTER_DOMAIN,
        # Never the machine's resolver: a pod with dnsPolicy Default gets our DNS too.
        "resolvConf": str(root / "resolv.conf"),
        "podLogsDir": str(root / "pod-logs"),
        "failSwapOn": False,
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 30,
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    # conntrack 0s/0: leave the machine's conntrack table settings as they are; NodePorts only
    # on our own address (kube-proxy then leaves route_localnet alone).
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": GATEWAY,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_SUBNET,
        "nodePortAddresses": [f"{GATEWAY}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def corefile(kubeconfig: Path, health_port: int, ready_port: int) -> str:
    return f""".:53 {{
    bind {GATEWAY}
    errors
    log
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


# ------------------------------------------------------------------------------------
# The fixture
# ------------------------------------------------------------------------------------


@dataclass
class KubeNode:
    """The cluster (kubectl as admin) with its one real node."""

    cluster: KubeCluster
    root: Path
    containerd_socket: Path
    pv_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.cluster.kubectl(*args, "-o", "json").stdout)

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args)

    def import_image(self, archive: Path) -> None:
        self.ctr("images", "import", "--no-unpack", str(archive))


def _image_info() -> dict[str, str]:
    info = Path(
        os.environ.get("MEMSTORE_TEST_IMAGE_INFO") or _default_images() / "memstore-test.json"
    )
    if not info.exists():
        pytest.fail(f"{info} is missing: run `make test-image` (mk/image.mk builds the image)")
    data: dict[str, str] = json.loads(info.read_text())
    if not Path(data["archive"]).exists():
        pytest.fail(f"{data['archive']} is missing: run `make test-image`")
    return data


def image_ref() -> tuple[str, str]:
    """(repository, tag) of the image under test, as a pod spec names it."""
    name = _image_info()["image"].removeprefix("docker.io/library/")
    repository, tag = name.rsplit(":", 1)
    return repository, tag


def _default_images() -> Path:
    tools = os.environ.get("TOOLS_DIR") or str(Path.home() / ".cache" / "memstore-tools")
    return Path(tools) / "images"


def _coredns_bin() -> Path:
    explicit = os.environ.get("COREDNS_BIN")
    if explicit:
        return Path(explicit)
    tools = os.environ.get("TOOLS_DIR") or str(Path.home() / ".cache" / "memstore-tools")
    return Path(tools) / "coredns-v1.11.3" / "coredns"


def _pause() -> tuple[Path, str]:
    from tests.servers.kube import K8S_VERSION

    archive = os.environ.get("MEMSTORE_PAUSE_ARCHIVE") or str(
        _default_images() / f"pause-{K8S_VERSION}.tar"
    )
    image = os.environ.get("MEMSTORE_PAUSE_IMAGE") or f"localhost/pause:{K8S_VERSION}"
    return Path(archive), image


def _check_prerequisites(bins: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the node tests need root (containerd, kubelet, iptables)")
    for b in (
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
    ):
        if not (bins / b).exists():
            pytest.fail(f"{bins / b} is missing: run `make node-tools` (mk/k8s.mk builds it)")
    for cmd in (
        "etcd",
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "iptables",
        "conntrack",
    ):
        if shutil.which(cmd) is None:
            pytest.fail(f"{cmd} is missing: run `make node-tools` (installs Debian's packages)")
    if not Path("/usr/lib/cni/bridge").exists():
        pytest.fail("the CNI plugins are missing: run `make node-tools`")
    if not _coredns_bin().exists():
        pytest.fail(f"{_coredns_bin()} is missing: run `make node-tools` (mk/coredns.mk)")
    if any((h / "kubepods").exists() for h in _cgroup_hierarchies()):
        pytest.fail("/kubepods cgroups exist already: another kubelet runs (or one was left)")
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        pytest.fail(f"the bridge {BRIDGE} exists already: another node fixture runs (or was left)")
    routes = _run("ip", "route", "show", "match", GATEWAY).stdout
    if any(not r.startswith("default") for r in routes.splitlines()):
        pytest.fail(f"{POD_SUBNET} is routed on this machine already:\n{routes}")


def _setup_network() -> None:
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    for key, value in (
        ("net/ipv4/ip_forward", "1"),  # a pod -> ClusterIP -> pod path is routed by the host
        ("net/bridge/bridge-nf-call-iptables", "1"),  # replies over the bridge are un-NATed
    ):
        _sysctl_path(key).write_text(value)
    # Pod traffic stays on the machine: nothing from the pod subnet leaves through another
    # interface, nothing from another interface reaches a pod.
    _run("iptables", "-w", "-N", CHAIN)
    _run("iptables", "-w", "-A", CHAIN, "-s", POD_SUBNET, "!", "-o", BRIDGE, "-j", "DROP")
    _run("iptables", "-w", "-A", CHAIN, "-d", POD_SUBNET, "!", "-i", BRIDGE, "-j", "DROP")
    _run("iptables", "-w", "-I", "FORWARD", "1", "-j", CHAIN)


def _make_node_pki(pki: Path) -> None:
    make_pki(
        pki,
        api_sans=(
            f"IP:127.0.0.1,IP:{GATEWAY},IP:{ipaddress.ip_network(SERVICE_CIDR)[1]},DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}"
        ),
    )
    usage = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
    make_leaf(
        pki,
        "kubelet",
        f"/O=system:nodes/CN=system:node:{NODE_NAME}",
        usage + "extendedKeyUsage=clientAuth\n",
    )
    make_leaf(
        pki,
        "kubelet-serving",
        f"/CN={NODE_NAME}",
        usage + f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{GATEWAY},DNS:{NODE_NAME}\n",
    )


def _kubeconfig(path: Path, server: str, pki: Path, user: str) -> Path:
    write_kubeconfig(path, server, pki)
    if user != "admin":
        text = (
            path.read_text().replace("admin.crt", f"{user}.crt").replace("admin.key", f"{user}.key")
        )
        path.write_text(text)
    return path


def _persistent_volume(pv_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "memstore-node-pv"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(pv_dir), "type": "Directory"},
        },
    }


@pytest.fixture(scope="session")
def kube_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeNode]:
    bins = kube_bin_dir()
    _check_prerequisites(bins)
    image = _image_info()
    pause_archive, pause_image = _pause()
    if not pause_archive.exists():
        pytest.fail(f"{pause_archive} is missing: run `make pause-image`")
    before = machine_state()
    root = tmp_path_factory.mktemp("node")
    root.chmod(0o755)  # the pods' users (uid 10001) reach their volumes below it
    pki, logs = root / "pki", root / "logs"
    logs.mkdir()
    _make_node_pki(pki)
    api_port = free_port()
    server = f"https://{GATEWAY}:{api_port}"
    admin = root / "kubeconfig"
    cluster = KubeCluster(server, admin, bins, pki, logs)
    node = KubeNode(cluster, root, root / "containerd.sock", root / "pv")
    procs = node.procs
    try:
        _setup_network()
        _kubeconfig(admin, server, pki, "admin")
        kubelet_kc = _kubeconfig(root / "kubelet.kubeconfig", server, pki, "kubelet")
        etcd_port, etcd_peer = free_port(), free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{etcd_peer}"
        procs["etcd"] = start_process(
            "etcd",
            [
                "etcd", f"--data-dir={root / 'etcd'}", "--name=default",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}", "--log-level=warn",
            ],
            logs,
        )  # fmt: skip
        procs["kube-apiserver"] = start_process(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={root / 'certs'}",
                f"--bind-address={GATEWAY}", f"--advertise-address={GATEWAY}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                # By address: the apiserver would otherwise ask the machine's resolver
                # for the node's name (kubectl logs/exec).
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={server}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
            logs,
        )  # fmt: skip

        def api_ready() -> bool:
            return cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

        wait_process("kube-apiserver", procs["kube-apiserver"], api_ready, logs, timeout=180)
        kc = str(admin)
        procs["kube-controller-manager"] = start_process(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}", f"--cert-dir={root / 'kcm-certs'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # The PV binder's default 15 s period would dominate the store's time to Ready.
                "--pvclaimbinder-sync-period=1s",
                "--v=0",
            ],
            logs,
        )  # fmt: skip
        procs["kube-scheduler"] = start_process(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"), f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}", f"--cert-dir={root / 'sched-certs'}",
            ],
            logs,
        )  # fmt: skip
        # containerd, with the pod network's CNI config and the images
        (root / "cni").mkdir()
        (root / "cni" / "10-memstore-node.conflist").write_text(json.dumps(cni_config(root)))
        (root / "containerd.toml").write_text(containerd_config(root, pause_image))
        procs["containerd"] = start_process(
            "containerd", ["containerd", "--config", str(root / "containerd.toml")], logs
        )

        def containerd_ready() -> bool:
            return node.ctr("version").returncode == 0

        wait_process("containerd", procs["containerd"], containerd_ready, logs, timeout=60)
        node.import_image(pause_archive)
        node.import_image(Path(image["archive"]))
        # the kubelet
        (root / "resolv.conf").write_text(f"nameserver {GATEWAY}\n")
        kubelet_healthz = free_port()
        (root / "kubelet.yaml").write_text(
            json.dumps(kubelet_config(root, free_port(), kubelet_healthz))
        )
        procs["kubelet"] = start_process(
            "kubelet",
            [
                str(bins / "kubelet"), f"--config={root / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet_kc}", f"--root-dir={root / 'kubelet'}",
                f"--cert-dir={root / 'kubelet-certs'}",
                f"--hostname-override={NODE_NAME}", f"--node-ip={GATEWAY}", "--v=1",
            ],
            logs,
        )  # fmt: skip
        proxy_kc = admin
        (root / "kube-proxy.yaml").write_text(
            json.dumps(kube_proxy_config(proxy_kc, free_port(), free_port()))
        )
        procs["kube-proxy"] = start_process(
            "kube-proxy",
            [str(bins / "kube-proxy"), f"--config={root / 'kube-proxy.yaml'}", "--v=0"],
            logs,
        )
        dns_health, dns_ready = free_port(), free_port()
        (root / "Corefile").write_text(corefile(admin, dns_health, dns_ready))
        procs["coredns"] = start_process(
            "coredns", [str(_coredns_bin()), "-conf", str(root / "Corefile")], logs
        )

        def node_ready() -> bool:
            n = node.kubectl_json("get", "node", NODE_NAME)
            conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
            return conds.get("Ready") == "True"

        wait_process("kubelet", procs["kubelet"], node_ready, logs, timeout=120)

        def dns_ready_ok() -> bool:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{dns_ready}/ready", timeout=2) as r:
                return bool(r.status == 200)

        wait_process("coredns", procs["coredns"], dns_ready_ok, logs, timeout=60)
        node.pv_dir.mkdir()
        os.chown(node.pv_dir, 10001, 10001)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(_persistent_volume(node.pv_dir)))

        def default_sa() -> bool:
            out = cluster.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            return out.returncode == 0

        wait_process("kube-controller-manager", procs["kube-controller-manager"], default_sa, logs)
        yield node
    finally:
        problems = _teardown(node, before)
        after = machine_state()
        left = state_diff(before, after)
        if problems or left:
            pytest.fail(
                "the node was not torn down completely:\n"
                + "\n".join(problems + left)
                + f"\n(logs in {logs})",
                pytrace=False,
            )


# ------------------------------------------------------------------------------------
# Teardown
# ------------------------------------------------------------------------------------


def _teardown(node: KubeNode, before: dict[str, Any]) -> list[str]:
    """Stop everything and remove what the node left; returns what could not be done."""
    problems: list[str] = []
    procs = node.procs

    def step(what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # keep going: the rest must be cleaned even so
            problems.append(f"{what}: {exc}")

    # No new pods: stop the controllers and the scheduler first, then let the kubelet
    # remove every pod (containers stopped, CNI DEL, network namespace removed).
    for name in ("kube-controller-manager", "kube-scheduler"):
        if name in procs:
            step(f"stop {name}", stop_process, procs[name])
    if "kubelet" in procs and procs["kubelet"].poll() is None:
        step("delete pods", _delete_all_pods, node)
    for name in ("kube-proxy", "kubelet", "coredns"):
        if name in procs:
            step(f"stop {name}", stop_process, procs[name])
    step("kill pod processes", _kill_pod_processes)
    if "containerd" in procs:
        step("stop containerd", stop_process, procs["containerd"])
    step("kill shims", _kill_shims, node.root)
    for name in ("kube-apiserver", "etcd"):
        if name in procs:
            step(f"stop {name}", stop_process, procs[name])
    step("unmount", _unmount_below, (str(node.root), "/run/containerd", "/var/run/netns"))
    step("network namespaces", _remove_netns)
    step("cgroups", _remove_kubepods)
    step("iptables", _remove_chains)
    step("bridge", _remove_bridge)
    step("conntrack", _flush_conntrack)
    step("kernel settings", _restore_sysctls, before["sysctls"])
    step("directories", _remove_new_dirs, before["dirs"])
    return problems


def _restore_sysctls(saved: dict[str, str]) -> None:
    now = _read_sysctls()
    for key, value in saved.items():
        if now.get(key) != value:
            _sysctl_path(key).write_text(value)


def _remove_new_dirs(existing: list[str]) -> None:
    for d in SYSTEM_DIRS:
        if d not in existing and os.path.lexists(d):
            shutil.rmtree(d)


def _delete_all_pods(node: KubeNode) -> None:
    node.cluster.kubectl(
        "delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
        "--wait=false", check=False,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = (
            node.ctr("tasks", "ls", "-q").stdout.split()
            if node.procs["containerd"].poll() is None
            else []
        )
        netns = os.listdir("/var/run/netns") if os.path.isdir("/var/run/netns") else []
        if not tasks and not [n for n in netns if n.startswith("cni-")]:
            return
        time.sleep(0.5)
    raise RuntimeError(f"pods still running after 60 s:\n{tail(node.cluster.logs / 'kubelet.log')}")


def _pod_pids() -> set[int]:
    pids: set[int] = set()
    for h in _cgroup_hierarchies():
        top = h / "kubepods"
        if top.exists():
            for procs_file in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs_file.read_text().split())
    return pids


def _kill_pod_processes() -> None:
    for pid in _pod_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_shims(root: Path) -> None:
    """containerd-shim-runc-v2 processes of our containerd (they outlive it by design)."""
    needle = str(root / "containerd.sock").encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and needle in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)


def _unmount_below(prefixes: tuple[str, ...]) -> None:
    for point in sorted(_mount_points(), key=len, reverse=True):
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            _run("umount", "-l", point, check=False)


def _remove_netns() -> None:
    d = Path("/var/run/netns")
    if d.is_dir():
        for ns in d.iterdir():
            if ns.name.startswith("cni-"):
                _run("umount", "-l", str(ns), check=False)
                ns.unlink()


def _remove_kubepods() -> None:
    for h in _cgroup_hierarchies():
        top = h / "kubepods"
        if top.exists():
            # children first; rmdir of a cgroup with no tasks and no children works
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                d.rmdir()
            top.rmdir()


def _remove_chains() -> None:
    """Every KUBE-* chain (kubelet, kube-proxy) and ours, with the rules that jump to them."""
    ours = ("KUBE-", CHAIN)
    for tool in IPTABLES:
        if shutil.which(tool) is None:
            continue
        for table in TABLES:
            res = _run(tool, "-w", "-t", table, "-S", check=False)
            if res.returncode != 0:
                continue
            rules = [shlex.split(r) for r in res.stdout.splitlines()]
            chains = [r[1] for r in rules if r[0] == "-N" and r[1].startswith(ours)]
            for parts in rules:
                if (
                    parts[0] == "-A"
                    and not parts[1].startswith(ours)
                    and any(c in parts for c in chains)
                ):
                    _run(tool, "-w", "-t", table, "-D", *parts[1:])
            for c in chains:
                _run(tool, "-w", "-t", table, "-F", c)
            for c in chains:
                _run(tool, "-w", "-t", table, "-X", c)


def _remove_bridge() -> None:
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _run("ip", "link", "del", BRIDGE)


def _flush_conntrack() -> None:
    # exit status 1 means "no entry matched"
    _run("conntrack", "-D", "-s", POD_SUBNET, check=False)
