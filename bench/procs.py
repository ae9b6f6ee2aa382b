# ruff: noqa: S603, S607 - the harness runs local tools (wrk, redis-*, the service) by design
"""Processes the benchmark starts: backend servers, the service, the baseline app.

Everything runs on free loopback ports with its data under one work directory, and is
stopped (SIGTERM, then SIGKILL) by ``Procs.stop_all`` however the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port(bus_twin: bool = False) -> int:
    """A free loopback port (with ``bus_twin``: port + 10000 free too, for Redis Cluster)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not bus_twin:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout}s")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
        return bool(resp.status < 500)


def tcp_ok(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Procs:
    """Owns every child process of a run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """``user``: run as that user (PostgreSQL refuses to run as root)."""
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            user=user,
        )
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ValueError):
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.children)):
            self.stop(proc)

    # -- the service and the baseline ------------------------------------------------------

    def service(self, name: str, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        data = self.workdir / name
        data.mkdir(parents=True, exist_ok=True)
        proc = self.spawn(
            name,
            [sys.executable, "-m", "memstore", "serve"],
            env={
                "MEMSTORE_HOST": "127.0.0.1",
                "MEMSTORE_PORT": str(port),
                "MEMSTORE_DATA_PATH": str(data / "memstore.db"),
                "MEMSTORE_LOG_LEVEL": "WARNING",
                **env,
            },
        )
        url = f"http://127.0.0.1:{port}"
        # A service starts in ~2 s on an idle machine; a shared one has taken over 30 s.
        wait_until(lambda: http_ok(url + "/readyz"), name, proc=proc, timeout=180.0)
        return url, proc

    def baseline(
        self, name: str, backend: str, opts: dict[str, str]
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        args = [sys.executable, "-m", "bench.baseline", "--port", str(port), "--backend", backend]
        for k, v in opts.items():
            args += ["--opt", f"{k}={v}"]
        proc = self.spawn(name, args, cwd=REPO, env={"PYTHONPATH": str(REPO)})
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/livez"), name, proc=proc)
        return url, proc

    def python_app(self, name: str, module: str) -> tuple[str, subprocess.Popen[bytes]]:
        """A helper app of the harness (``bench.<module> --port P``) with ``/livez``."""
        port = free_port()
        proc = self.spawn(
            name,
            [sys.executable, "-m", module, "--port", str(port)],
            cwd=REPO,
            env={"PYTHONPATH": str(REPO)},
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/livez"), name, proc=proc)
        return url, proc

    # -- backends ---------------------------------------------------------------------------

    def redis(self, name: str, cluster: bool = False, appendfsync: str | None = None) -> int:
        """A redis-server on a free port; ``appendfsync`` (``always``, ``everysec``) turns the
        append-only file on with that fsync policy (default: no persistence)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; `make tools` installs it (mk/redis.mk)")
        port = free_port(bus_twin=cluster)
        d = self.workdir / f"{name}-{port}"
        d.mkdir(parents=True)
        args = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(d),
            "--save",
            "",
            "--appendonly",
            "no" if appendfsync is None else "yes",
            *(() if appendfsync is None else ("--appendfsync", appendfsync)),
            "--protected-mode",
            "no",
        ]
        if cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(d / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
        proc = self.spawn(f"{name}-{port}", args)
        wait_until(lambda: tcp_ok(port), f"redis-server {port}", proc=proc)
        wait_until(lambda: redis_cli(port, "PING") == "PONG", f"redis-server {port} ping")
        return port

    def redis_cluster(self, name: str, nodes: int = 6) -> list[int]:
        ports = [self.redis(f"{name}-node", cluster=True) for _ in range(nodes)]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

        def healthy() -> bool:
            for p in ports:
                info = redis_cli(p, "CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
            return True

        wait_until(healthy, "redis cluster", timeout=60)
        return ports

    def ferretdb(self, name: str) -> str:
        binary = os.environ.get("FERRETDB_BIN") or str(
            Path(os.environ.get("TOOLS_DIR", Path.home() / ".cache/memstore-tools"))
            / "ferretdb-v1.24.2"
            / "ferretdb"
        )
        if not Path(binary).exists():
            raise RuntimeError(f"FerretDB not found at {binary}; `make tools` builds it")
        port = free_port()
        d = self.workdir / f"{name}-{port}"
        d.mkdir(parents=True)
        proc = self.spawn(
            name,
            [
                binary,
                "--handler=sqlite",
                f"--sqlite-url=file:{d}/",
                f"--listen-addr=127.0.0.1:{port}",
                "--telemetry=disable",
                "--log-level=error",
                f"--state-dir={d}",
                "--debug-addr=-",
            ],
        )
        wait_until(lambda: tcp_ok(port), "ferretdb", proc=proc)
        return f"mongodb://127.0.0.1:{port}/"


def checkout_env(tree: Path) -> dict[str, str]:
    """The environment that runs another checkout's ``memstore`` with this checkout's
    interpreter and libraries: its ``service/`` first on ``PYTHONPATH``, ahead of this
    tree's editable install. Two checkouts compared this way differ in their code alone
    (the same library versions), and the other one needs no ``.venv`` of its own."""
    service = tree.resolve() / "service"
    if not (service / "memstore" / "__init__.py").is_file():
        raise ValueError(f"{tree}: no service/memstore there (not a memstore checkout)")
    return {"PYTHONPATH": str(service)}


def run_json_module(
    module: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stream_stderr: bool = False,
    last_line: bool = False,
    partial: bool = False,
) -> Any:
    """``python -m <module> <args>`` from the repository root in a process of its own (its
    CPU time and memory are its own); its result is the JSON it prints on stdout.

    * ``env``: variables set over this process's environment.
    * ``timeout``: seconds before it is killed (``subprocess.TimeoutExpired``; the
      processes it started itself are its to stop); none by default, a module's own
      rounds and budget bound it.
    * ``stream_stderr``: its stderr (the progress of a long run) goes to ours as it comes
      instead of being kept for the error, which then names the exit status alone.
    * ``last_line``: the result is stdout's last line (lines before it are not the result);
      otherwise the whole of stdout, which may be JSON over several lines.
    * ``partial``: the module prints its result even when a part of it failed and exits
      non-zero: the result stands, and only no output at all is a failure.

    A failure raises ``RuntimeError`` with the last 2,000 characters of its stderr (with
    ``stream_stderr``: ``"<module> exited with <status>"``); output that is not JSON
    raises what ``json.loads`` raises.
    """
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=None if env is None else {**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=None if stream_stderr else subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
    )
    out = done.stdout.strip()
    failed = not out if partial else done.returncode != 0
    if failed:
        if stream_stderr:
            raise RuntimeError(f"{module} exited with {done.returncode}")
        raise RuntimeError(done.stderr.strip()[-2000:])
    return json.loads(out.splitlines()[-1] if last_line else out)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (and their threads) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def with_children(pids: list[int]) -> list[int]:
    """``pids`` and their child processes (the workers of ``memstore serve --workers``)."""
    out = list(pids)
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in task.read_text().split()]
    return out


def wait_for_workers(url: str, workers: int, timeout: float = 120.0) -> None:
    """Until each of the ``workers`` has answered (a new connection each time: the kernel
    picks the worker; the ``Memstore-Worker`` header names it)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: only workers {sorted(seen)} of {workers} answered")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/livez", timeout=2) as r,  # noqa: S310 - loopback
        ):
            seen.add(r.headers.get("Memstore-Worker", ""))
        time.sleep(0.02)


def redis_pid(port: int) -> int:
    info = redis_cli(port, "INFO", "server")
    return int(info.split("process_id:")[1].split()[0])


def redis_cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip()
