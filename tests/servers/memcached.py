"""Real Memcached for the tests: Debian's ``memcached`` on a free loopback port.

One server per test session (``memcached_server``); each test gets its own key prefix
through ``memcached_prefix``, so tests never see each other's keys and nothing flushes
the server. ``LocalMemcached`` is reusable by a test that needs a private server to kill
and restart. ``make tools`` installs memcached (mk/memcached.mk); a missing binary is an
error naming that command, never a skip.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

import pytest

from tests.support.procs import free_port


def memcached_binary() -> str:
    found = shutil.which("memcached")
    if found is None:
        pytest.fail("memcached not found; run `make tools` (mk/memcached.mk installs it)")
    return found


class LocalMemcached:
    """One memcached process on loopback (64 MB, no UDP)."""

    def __init__(self, *, memory_mb: int = 64) -> None:
        self.memory_mb = memory_mb
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"memcached://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart on the same port, empty, after ``kill9``)."""
        self.proc = subprocess.Popen(
            [
                memcached_binary(),
                "-l", "127.0.0.1",
                "-p", str(self.port),
                "-U", "0",
                "-m", str(self.memory_mb),
                "-u", "nobody",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.command(b"version").startswith(b"VERSION"):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"memcached on {self.port} did not start")
            time.sleep(0.05)

    def command(self, line: bytes) -> bytes:
        """One text-protocol command, its first reply line (``stats`` etc. need more)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(line + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            return reply.strip()

    def stats(self) -> dict[str, str]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"stats\r\n")
            reply = b""
            while not reply.endswith(b"END\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        out = {}
        for line in reply.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out

    def values(self, prefix: str) -> dict[bytes, bytes]:
        """Every item whose key starts with ``prefix``, as the server holds it (keys from
        the LRU crawler's metadump, values by ``get``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"lru_crawler metadump all\r\n")
            reply = b""
            while not reply.endswith(b"END\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            keys = [
                unquote_to_bytes(field[4:])
                for line in reply.splitlines()
                for field in line.split()[:1]
                if field.startswith(b"key=")
            ]
            out: dict[bytes, bytes] = {}
            for key in keys:
                if not key.startswith(prefix.encode()):
                    continue
                s.sendall(b"get " + key + b"\r\n")
                got = b""
                while not got.endswith(b"END\r\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                header, _, rest = got.partition(b"\r\n")
                if header.startswith(b"VALUE "):
                    out[key] = rest[: int(header.split()[3])]
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[LocalMemcached]:
    server = LocalMemcached()
    yield server
    server.stop()


@pytest.fixture
def memcached_prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"
