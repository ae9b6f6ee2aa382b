"""Shared helpers for the observability tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.procs import ServiceProcess, wait_http


class Service(ServiceProcess):
    """``ServiceProcess`` that closes its copy of the log file once the child has it
    (the parent's open handle would otherwise surface as a ResourceWarning)."""

    def start(self) -> Service:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memstore", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_http(self.url + "/livez", proc=self.proc)
        return self


@contextlib.contextmanager
def service(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[Service]:
    svc = Service(data_dir, env).start()
    try:
        yield svc
    finally:
        with contextlib.suppress(Exception):
            svc.stop()
