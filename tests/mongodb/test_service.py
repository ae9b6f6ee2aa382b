"""The real ``memstore serve`` process on the MongoDB backend (FerretDB), through the
Python HTTP client: the seed's environment variables select and configure it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from memstore.client import MemoryClient
from tests.servers.mongodb import FerretDB
from tests.support.procs import free_port, wait_http


@contextlib.contextmanager
def serve(workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """``memstore serve`` on a free port; yields its URL, stops it afterwards."""
    port = free_port()
    full_env = {
        **os.environ,
        "MEMSTORE_HOST": "127.0.0.1",
        "MEMSTORE_PORT": str(port),
        "MEMSTORE_DATA_PATH": str(workdir / "unused.db"),
        **env,
    }
    with (workdir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memstore", "serve"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/livez", proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_service_on_mongodb_end_to_end(
    ferretdb: FerretDB, mongodb_database: str, tmp_path: Path
) -> None:
    env = {"MEMORY_TYPE": "mongodb", "MONGODB_URI": ferretdb.uri, "MONGODB_DB": mongodb_database}
    with serve(tmp_path, env) as url:
        with urllib.request.urlopen(url + "/readyz", timeout=10) as resp:
            assert resp.status == 200
        async with MemoryClient(url, namespace="e2e") as client:
            data = {"$set": {"a.b": [[1, 2], [-0.0]]}, "": 2**64 - 1}
            record = await client.save_entity("doc", "d1", data)
            assert record.version == 1
            assert await client.load_entity("doc", "d1") == data
            await client.save_conversation_history([{"role": "system", "content": "hi"}])
            await client.append_message({"role": "user", "content": "$hello.world"})
            history = await client.load_conversation_history()
            assert [m["content"] for m in history] == ["hi", "$hello.world"]
            summary = await client.get_memory_summary_data()
            assert summary.entity_counts == {"doc": 1}
            assert summary.messages == 2
            metrics = await client.get_metrics()
            assert metrics["backend"] == "mongodb"
