"""Malformed HTTP, sent byte for byte to a real ``memstore serve`` process: aiohttp rejects
it before any middleware runs, and the answer must still be the JSON error contract, never
echo what was sent, and cost the log one line at a bounded rate (no tracebacks)."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import ServiceProcess, running_service

SECRET = "Bearer planted-token-6c1f0e"

MALFORMED = {
    "nul in a header": f"GET /livez HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\x00\r\n\r\n",
    "invalid method": f"G{SECRET}T /livez HTTP/1.1\r\nHost: x\r\n\r\n",
    "control char in the target": f"GET /\x01{SECRET} HTTP/1.1\r\nHost: x\r\n\r\n",
    "request line too long": "GET /" + "a" * 9000 + " HTTP/1.1\r\nHost: x\r\n\r\n",
    "header too long": f"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: {SECRET}{'b' * 9000}\r\n\r\n",
    "bad chunk size": "PUT /v1/namespaces/n/entities/t/x HTTP/1.1\r\nHost: x\r\n"
    "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "both framings": "PUT /v1/namespaces/n/entities/t/x HTTP/1.1\r\nHost: x\r\n"
    "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    "bad version": "GET /livez HTTP/9.x\r\nHost: x\r\n\r\n",
    "TLS to the plain port": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # A process of its own: the test reads its whole log.
    with running_service(Path(tmp_path_factory.mktemp("malformed-http"))) as svc:
        yield svc


async def exchange(svc: ServiceProcess, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection, read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
    try:
        writer.write(raw)
        await writer.drain()
        # To EOF: every such answer closes the connection (a server that does not fails).
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, body


def check_json_error(
    status: int, headers: dict[str, str], body: bytes, expect: int
) -> dict[str, Any]:
    assert status == expect, body
    assert headers["content-type"].startswith("application/json"), headers
    error: dict[str, Any] = json.loads(body)
    assert set(error) <= {"code", "message", "details"}
    assert error["message"]
    assert SECRET.split()[1] not in body.decode("latin-1")
    return error


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_http_is_answered_in_json_without_echo(
    service: ServiceProcess, raw: str
) -> None:
    status, headers, body = await exchange(service, raw.encode("latin-1"))
    error = check_json_error(status, headers, body, 400)
    assert error["code"] == "invalid_input"


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_a_coding_the_parser_cannot_decode_is_a_json_415(
    service: ServiceProcess, coding: str
) -> None:
    payload = b'{"data": {}}'
    raw = (
        f"PUT /v1/namespaces/n/entities/t/{coding} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Encoding: {coding}\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    status, headers, body = await exchange(service, raw)
    error = check_json_error(status, headers, body, 415)
    assert error["code"] == "unsupported_media_type"
    assert headers["accept-encoding"] == "gzip, deflate, identity"


async def test_a_body_that_does_not_decode_is_a_json_400_and_closes(
    service: ServiceProcess,
) -> None:
    payload = zlib.compress(b'{"data": {}}')[:-6] + b"\xff" * 64
    raw = (
        "PUT /v1/namespaces/n/entities/t/broken HTTP/1.1\r\nHost: x\r\n"
        f"Content-Encoding: deflate\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    # exchange() reads to EOF: the server closed the connection after answering.
    status, headers, body = await exchange(service, raw)
    check_json_error(status, headers, body, 400)


async def test_a_flood_of_malformed_requests_costs_a_bounded_number_of_one_line_logs(
    service: ServiceProcess,
) -> None:
    sent = 200
    began = time.monotonic()
    for i in range(sent):
        raw = list(MALFORMED.values())[i % len(MALFORMED)]
        status, _, _ = await exchange(service, raw.encode("latin-1"))
        assert status == 400
    records = [json.loads(line) for line in service.logs().splitlines() if line.startswith("{")]
    bad = [r for r in records if r["msg"].startswith("bad HTTP request")]
    assert bad, records
    elapsed = time.monotonic() - began
    # 10 at once, then 1 a second (tests/unit/test_bounded_log.py checks the budget),
    # whatever the pace of this machine; each logged line may also count the ones
    # dropped before it.
    assert len(bad) <= 10 + elapsed + 1 < sent, (len(bad), elapsed)
    for record in records:
        assert "exc" not in record, record
        assert "Traceback" not in json.dumps(record)
        assert SECRET.split()[1] not in json.dumps(record)
    assert all(r["level"] == "warning" for r in bad)
