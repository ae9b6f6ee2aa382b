"""Backend down, then back: ``/readyz`` goes unready then ready, requests meanwhile get a
JSON 503 (never a 500), and the same process recovers without a restart.

Embedded: the store cannot be opened (its directory is a regular file) when the service
starts; then the directory appears. Taking an *open* SQLite file away is not a meaningful
outage (open descriptors keep working), so this is the embedded backend's outage.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.procs import ServiceProcess


def request(url: str, method: str = "GET", body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), orjson.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), orjson.loads(exc.read() or b"null")


def assert_unavailable(base: str) -> None:
    status, headers, body = request(base + "/readyz")
    assert status == 503
    assert body["status"] == "unready"
    ns = base + "/v1/namespaces/outage"
    for method, path, payload in (
        ("GET", "/entities/note/n1", None),
        ("PUT", "/entities/note/n1", {"data": {"v": 1}}),
        ("POST", "/conversations/c/messages", {"messages": [{"m": 1}]}),
        ("GET", "/summary", None),
    ):
        status, headers, body = request(ns + path, method, payload)
        assert status == 503, (method, path, status, body)
        assert body["code"] == "backend_unavailable"
        assert headers["Retry-After"]


def wait_ready(base: str, timeout: float = 60.0) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if request(base + "/readyz")[0] == 200:
            return time.monotonic() - began
        time.sleep(0.02)
    raise TimeoutError("not ready")


@pytest.mark.slow
def test_embedded_store_unavailable_then_available(tmp_path: Path, figures: Any) -> None:
    blocker = tmp_path / "store"
    blocker.write_text("not a directory")
    svc = ServiceProcess(tmp_path / "svc", {"MEMSTORE_DATA_PATH": str(blocker / "memstore.db")})
    svc.start()
    try:
        assert svc.proc is not None
        pid = svc.proc.pid
        errors = 0
        for _ in range(3):
            assert_unavailable(svc.url)
            errors += 5
        blocker.unlink()
        blocker.mkdir()
        recovered = wait_ready(svc.url)
        status, _, body = request(
            svc.url + "/v1/namespaces/outage/entities/note/n1", "PUT", {"data": {"v": 1}}
        )
        assert status == 201, body
        assert svc.proc.pid == pid
        assert svc.proc.poll() is None  # no restart
        figures(
            backend="embedded",
            outage="store unavailable at start",
            requests_503=errors,
            requests_500=0,
            fix_to_ready_s=round(recovered, 3),
        )
    finally:
        svc.stop()
    assert "Traceback" not in svc.logs()
