"""One process owns an embedded store: `memstore serve` and an in-process script on the
same file. The second one is refused with a message naming the file and the owner, and
nothing the owner stored is lost or served stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.procs import ServiceProcess, running_service

SCRIPT = """
import asyncio
import sys

from memstore import ConfigurationError, DistributedMemoryManager


async def main() -> int:
    async with DistributedMemoryManager(memory_type="embedded", namespace="agent") as memory:
        await memory.save_entity("user", "ada", {"name": "from the script"})
    return 0


try:
    sys.exit(asyncio.run(main()))
except ConfigurationError as exc:
    print(f"{exc.code}: {exc.message}", file=sys.stderr)
    print(exc.details.get("owner_pid"))
    sys.exit(3)
"""


def get_ada(svc: ServiceProcess) -> dict[str, object]:
    url = f"{svc.url}/v1/namespaces/agent/entities/user/ada"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["data"]  # type: ignore[no-any-return]


def put_ada(svc: ServiceProcess, name: str) -> None:
    req = urllib.request.Request(
        f"{svc.url}/v1/namespaces/agent/entities/user/ada",
        data=json.dumps({"data": {"name": name}}).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 201)


def run_script(data_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "MEMSTORE_DATA_PATH": str(data_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_script_on_the_service_file_is_refused(tmp_path: Path) -> None:
    with running_service(tmp_path) as svc:
        assert svc.proc is not None
        put_ada(svc, "from the service")
        assert get_ada(svc) == {"name": "from the service"}  # now in the service's cache

        result = run_script(tmp_path / "memstore.db")

        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stderr
        message = result.stderr.strip()
        assert message.startswith("configuration_error: embedded store ")
        assert str(tmp_path / "memstore.db") in message
        assert f"in use by process {svc.proc.pid}" in message
        assert result.stdout.strip() == str(svc.proc.pid)
        # The service still serves what it stored, and is the only writer.
        assert get_ada(svc) == {"name": "from the service"}


def test_a_second_service_on_the_same_file_is_refused_in_one_line(tmp_path: Path) -> None:
    with running_service(tmp_path) as first:
        assert first.proc is not None
        second = subprocess.run(
            [sys.executable, "-m", "memstore", "serve"],
            env={**first.env, "MEMSTORE_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        error = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
        assert len(error) == 1, second.stderr
        assert f"in use by process {first.proc.pid}" in error[0]


def test_the_file_is_free_again_when_its_owner_is_killed(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path).start()
    put_ada(svc, "before kill -9")
    svc.stop(signal.SIGKILL)  # the kernel drops the lock with the process

    result = run_script(tmp_path / "memstore.db")

    assert result.returncode == 0, result.stderr
    with running_service(tmp_path) as again:
        assert get_ada(again) == {"name": "from the script"}


def test_shared_opt_in_lets_processes_share_the_file(tmp_path: Path) -> None:
    with running_service(tmp_path, {"MEMSTORE_EMBEDDED_SHARED": "true"}) as svc:
        refused = run_script(tmp_path / "memstore.db")
        assert refused.returncode == 3  # an owner-only process cannot join shared ones
        assert "in use by processes that share it" in refused.stderr

        shared = run_script(tmp_path / "memstore.db", MEMSTORE_EMBEDDED_SHARED="true")
        assert shared.returncode == 0, shared.stderr
        assert get_ada(svc) == {"name": "from the script"}


async def test_a_second_manager_in_the_same_process_is_told_to_share(tmp_path: Path) -> None:
    from memstore import ConfigurationError, DistributedMemoryManager
    from memstore.core.settings import Settings

    settings = Settings(memory_type="embedded", data_path=tmp_path / "m.db")
    lock = tmp_path / "m.db.lock"
    async with DistributedMemoryManager(settings=settings, namespace="a"):
        assert lock.read_text() == str(os.getpid())
        second = DistributedMemoryManager(settings=settings, namespace="b")
        with pytest.raises(ConfigurationError) as refused:
            await second.start()
        await second.close()
        assert "already open in this process" in refused.value.message
        assert "for_namespace()" in refused.value.message
    # Released: no stale owner pid left in the lock file.
    assert lock.read_text() == ""
