"""FerretDB v1 (SQLite backend): the real MongoDB-wire server the mongodb tests use.

One FerretDB process per test session on a free loopback port, its SQLite files under
the session's tmp dir; every test gets its own database (``mongodb_settings``), so tests
never see each other's data and nothing flushes the server. The binary is built by
``make tools`` (mk/ferretdb.mk) into the tools cache; a missing binary is an error with
the command to run, never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from memstore.core.settings import Settings
from tests.support.procs import free_port

FERRETDB_VERSION = "v1.24.2"

# PyMongo 4.20's async client leaks the socket of a connection attempt that is cancelled
# while connecting (pool_shared._async_create_connection closes it on OSError only, not on
# CancelledError), which happens when a client is closed while a monitor is connecting.
# The garbage collector later reports it, under -W error, against whatever test is
# running then. Only that exact shape is ignored: a TCP socket that never got a peer
# (its repr has a laddr and no raddr). memstore itself creates no raw sockets.
UNCONNECTED_SOCKET_WARNING = (
    r"ignore:unclosed <socket\.socket fd=\d+, family=\d+, type=\d+, proto=\d+, "
    r"laddr=\('127\.0\.0\.1', \d+\)>$:ResourceWarning"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", UNCONNECTED_SOCKET_WARNING)


def ferretdb_binary() -> Path:
    explicit = os.environ.get("FERRETDB_BIN")
    if explicit:
        return Path(explicit)
    tools = Path(os.environ.get("TOOLS_DIR") or Path.home() / ".cache" / "memstore-tools")
    return tools / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"


@dataclass
class FerretDB:
    uri: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_ferretdb(workdir: Path) -> FerretDB:
    binary = ferretdb_binary()
    if not binary.exists():
        raise RuntimeError(f"FerretDB not built at {binary}: run `make tools` (or `make ferretdb`)")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):  # another process may take the probed port first
        port = free_port()
        log_path = workdir / f"ferretdb-{port}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "--handler=sqlite",
                    f"--sqlite-url=file:{data}/",
                    f"--listen-addr=127.0.0.1:{port}",
                    "--debug-addr=-",
                    f"--state-dir={workdir}",
                    "--telemetry=disable",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _wait_listening(port, proc):
            return FerretDB(f"mongodb://127.0.0.1:{port}/", port, proc, log_path)
        stop_ferretdb(proc)
    raise RuntimeError(f"FerretDB did not start; see logs in {workdir}")


def stop_ferretdb(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDB]:
    server = start_ferretdb(tmp_path_factory.mktemp("ferretdb"))
    try:
        yield server
    finally:
        stop_ferretdb(server.proc)


@pytest.fixture
def mongodb_database() -> str:
    """A database name no other test uses."""
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def mongodb_settings(ferretdb: FerretDB, mongodb_database: str) -> Settings:
    return Settings(memory_type="mongodb", mongodb_uri=ferretdb.uri, mongodb_db=mongodb_database)
