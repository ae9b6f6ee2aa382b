"""Real Redis for the tests: Debian ``redis-server`` 7.x on free loopback ports.

Session fixtures start one standalone server and one 6-node Redis Cluster (3 masters,
3 replicas, formed with ``redis-cli --cluster create``). Each test gets its own key
prefix through ``redis_settings`` / ``redis_cluster_settings``; no test flushes a server.
``LocalRedis`` / ``LocalCluster`` are reusable by tests that need a private cluster to
break (the failover test). ``make tools`` installs redis-server (mk/redis.mk).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redis as redis_sync
from memstore.core.settings import Settings
from tests.support.tls import TlsFiles, make_tls_files

NODE_TIMEOUT_MS = 2000


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found; run `make tools` (mk/redis.mk installs redis-server)")
    return found


def free_port() -> int:
    """A free loopback port whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port pair found")


class LocalRedis:
    """One redis-server process with its own data directory."""

    def __init__(
        self,
        workdir: Path,
        *,
        cluster: bool = False,
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
        appendonly: bool = False,
    ) -> None:
        self.port = free_port()
        self.dir = workdir / str(self.port)
        self.dir.mkdir(parents=True)
        self.tls = tls
        args = [
            _binary("redis-server"),
            "--bind", "127.0.0.1",
            # with TLS the only listener is the TLS port
            *(["--port", "0", "--tls-port"] if tls else ["--port"]), str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            # appendonly: every write fsynced before its answer, so a kill -9 loses none
            *(["--appendonly", "yes", "--appendfsync", "always"] if appendonly
              else ["--appendonly", "no"]),
            "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.dir / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage", "no",
            ]  # fmt: skip
        if tls:
            args += [
                "--tls-cert-file", str(tls.server_cert),
                "--tls-key-file", str(tls.server_key),
                "--tls-ca-cert-file", str(tls.ca),
                "--tls-auth-clients", "yes" if tls_auth_clients else "no",
                "--tls-replication", "yes",
            ]  # fmt: skip
            if cluster:
                args += ["--tls-cluster", "yes"]
        self.args = args
        # The fixtures' own client: the default user (no password), and with TLS the
        # client certificate, so it works whether or not the server requires one.
        tls_options: dict[str, Any] = (
            {
                "ssl": True,
                "ssl_ca_certs": str(tls.ca),
                "ssl_certfile": str(tls.client_cert),
                "ssl_keyfile": str(tls.client_key),
            }
            if tls
            else {}
        )
        self.client = redis_sync.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=5,
            decode_responses=True,
            **tls_options,
        )
        self.start()

    def start(self) -> None:
        """Start (or restart, after ``kill9``) the server with its data dir and config."""
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client.ping():
                    break
            except redis_sync.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not start") from None
                time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LocalCluster:
    """Six cluster-enabled servers joined into 3 masters + 3 replicas."""

    def __init__(
        self,
        workdir: Path,
        nodes: int = 6,
        *,
        replicas: int = 1,
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        self.nodes: list[LocalRedis] = []
        self.replicas = replicas
        tls_args = (
            [
                "--tls",
                "--cacert", str(tls.ca),
                "--cert", str(tls.client_cert),
                "--key", str(tls.client_key),
            ]
            if tls
            else []
        )  # fmt: skip
        try:
            for _ in range(nodes):
                self.nodes.append(
                    LocalRedis(workdir, cluster=True, tls=tls, tls_auth_clients=tls_auth_clients)
                )
            subprocess.run(
                [
                    _binary("redis-cli"),
                    *tls_args,
                    "--cluster",
                    "create",
                    *[n.address for n in self.nodes],
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=120,
            )
            self.wait_healthy(timeout=60)
        except BaseException:
            self.stop()
            raise

    @property
    def seed(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def by_port(self, port: int) -> LocalRedis:
        return next(n for n in self.nodes if n.port == port)

    def masters(self) -> list[LocalRedis]:
        out = []
        for n in self.nodes:
            if n.alive() and n.client.info("replication")["role"] == "master":
                out.append(n)
        return out

    def wait_healthy(self, timeout: float) -> None:
        """Every live node sees state ok, and every master has a connected replica."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._healthy():
                    return
            except redis_sync.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cluster did not become healthy")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        live = [n for n in self.nodes if n.alive()]
        for n in live:
            if n.client.cluster("info")["cluster_state"] != "ok":
                return False
        masters_with_replica = 0
        master_count = 0
        for n in live:
            info = n.client.info("replication")
            if info["role"] == "master":
                master_count += 1
                if info.get("connected_slaves", 0) >= 1:
                    masters_with_replica += 1
            elif info.get("master_link_status") != "up":
                return False
        if self.replicas == 0:
            return master_count >= 3
        return master_count >= 3 and masters_with_replica == master_count

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=redis_server.port,
        redis_prefix=unique_prefix(),
    )


@pytest.fixture
def redis_cluster_settings(redis_cluster: LocalCluster) -> Settings:
    return Settings(
        memory_type="redis",
        redis_cluster_nodes=redis_cluster.seed,
        redis_prefix=unique_prefix(),
    )


# -- TLS and ACL users ------------------------------------------------------------------

#: The ACL user the TLS fixtures create: only the test prefixes' keys and channels (every
#: test prefix starts with "t"), and only the command groups memstore sends.
ACL_USER = "memstore"
ACL_RULES = (
    "~t*",
    "&t*",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@pubsub",
    "+@connection",
    "+@transaction",
    "+wait",
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
    "+cluster|myid",
    "+info",
    "-@dangerous",
)


def add_acl_user(server: LocalRedis, password: str) -> None:
    server.client.execute_command(
        "ACL", "SETUSER", ACL_USER, "reset", "on", f">{password}", *ACL_RULES
    )


@pytest.fixture(scope="session")
def redis_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="session")
def redis_acl_password() -> str:
    return f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def redis_tls_server(
    tmp_path_factory: pytest.TempPathFactory, redis_tls_files: TlsFiles, redis_acl_password: str
) -> Iterator[LocalRedis]:
    """TLS only, server certificate verified by the client; no client certificate asked."""
    server = LocalRedis(tmp_path_factory.mktemp("redis-tls-server"), tls=redis_tls_files)
    add_acl_user(server, redis_acl_password)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_mtls_server(
    tmp_path_factory: pytest.TempPathFactory, redis_tls_files: TlsFiles, redis_acl_password: str
) -> Iterator[LocalRedis]:
    """Mutual TLS: the server refuses clients without a certificate from the CA."""
    server = LocalRedis(
        tmp_path_factory.mktemp("redis-mtls-server"), tls=redis_tls_files, tls_auth_clients=True
    )
    add_acl_user(server, redis_acl_password)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_tls_cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_tls_files: TlsFiles, redis_acl_password: str
) -> Iterator[LocalCluster]:
    """3 masters over TLS (clients, cluster bus, replication), mutual TLS, the ACL user."""
    cluster = LocalCluster(
        tmp_path_factory.mktemp("redis-tls-cluster"),
        nodes=3,
        replicas=0,
        tls=redis_tls_files,
        tls_auth_clients=True,
    )
    for node in cluster.nodes:
        add_acl_user(node, redis_acl_password)
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_tls_settings(
    redis_tls_server: LocalRedis, redis_tls_files: TlsFiles, redis_acl_password: str
) -> Settings:
    """Standalone over TLS (CA verified, host name checked) as the limited ACL user."""
    return Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=redis_tls_server.port,
        redis_prefix=unique_prefix(),
        redis_username=ACL_USER,
        redis_password=redis_acl_password,
        redis_tls=True,
        redis_tls_ca_file=redis_tls_files.ca,
    )


@pytest.fixture
def redis_mtls_settings(
    redis_mtls_server: LocalRedis, redis_tls_files: TlsFiles, redis_acl_password: str
) -> Settings:
    """Standalone over mutual TLS as the limited ACL user."""
    return Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=redis_mtls_server.port,
        redis_prefix=unique_prefix(),
        redis_username=ACL_USER,
        redis_password=redis_acl_password,
        redis_tls=True,
        redis_tls_ca_file=redis_tls_files.ca,
        redis_tls_cert_file=redis_tls_files.client_cert,
        redis_tls_key_file=redis_tls_files.client_key,
    )


@pytest.fixture
def redis_tls_cluster_settings(
    redis_tls_cluster: LocalCluster, redis_tls_files: TlsFiles, redis_acl_password: str
) -> Settings:
    """The TLS cluster through a rediss:// seed list, mutual TLS, the limited ACL user."""
    return Settings(
        memory_type="redis",
        redis_cluster_nodes=f"rediss://{redis_tls_cluster.seed}",
        redis_prefix=unique_prefix(),
        redis_username=ACL_USER,
        redis_password=redis_acl_password,
        redis_tls_ca_file=redis_tls_files.ca,
        redis_tls_cert_file=redis_tls_files.client_cert,
        redis_tls_key_file=redis_tls_files.client_key,
    )
