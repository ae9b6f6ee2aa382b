"""Fixtures for the operator tests: the CRD installed in the real apiserver
(tests/servers/kube.py) and the operator running as a subprocess (``python -m
memstore_operator``) with that cluster's kubeconfig."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.servers.kube import KubeAPI, free_port

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "charts" / "memstore" / "crds" / "memorystores.memory.datamcp.io.yaml"
GROUP, VERSION, PLURAL = "memory.datamcp.io", "v1alpha1", "memorystores"

T = TypeVar("T")


def wait_for(fn: Callable[[], T | None], timeout: float = 90, what: str = "condition") -> T:
    """Poll until ``fn`` returns a truthy value (a convergence deadline, not a timing
    assertion); API errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="session")
def crd(kube_api: KubeAPI) -> Path:
    cluster = kube_api.cluster
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/memorystores.memory.datamcp.io",
    )  # fmt: skip
    # Discovery of the new kind can lag the Established condition a little.
    wait_for(
        lambda: cluster.kubectl("get", "ms", "-A", check=False).returncode == 0,
        what="the ms kind in discovery",
    )
    return CRD_FILE


@dataclass
class OperatorProcess:
    kube: KubeAPI
    log_dir: Path
    liveness_port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kube.kubeconfig),
            MEMSTORE_OPERATOR_RESYNC_SECONDS="1",
            MEMSTORE_OPERATOR_RETRY_SECONDS="1",
            MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS="1",
            MEMSTORE_OPERATOR_LIVENESS=f"http://127.0.0.1:{self.liveness_port}/healthz",
            MEMSTORE_OPERATOR_NAMESPACES="",
        )
        env.pop("PYTHONWARNINGS", None)
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memstore_operator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def alive() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log_tail()}")
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)

        wait_for(alive, what="the operator's liveness endpoint")

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
    """The running operator (restarted if a previous test killed it)."""
    if operator_proc.proc is None or operator_proc.proc.poll() is not None:
        operator_proc.start()
    return operator_proc
