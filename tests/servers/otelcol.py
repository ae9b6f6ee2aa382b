"""A real OpenTelemetry Collector (OTLP over HTTP and gRPC in, OTLP JSON lines out) for a
test session.

The binary is built by ``make tools`` (mk/otelcol.mk) into
``$TOOLS_DIR/otelcol-<version>/otelcol``. The collector listens on two free loopback ports
(``endpoint``: OTLP/HTTP, ``grpc_endpoint``: OTLP/gRPC) and writes every span it receives
to ``traces.jsonl``; ``Collector.spans()`` reads them back as flat dicts (hex ids,
attributes as a plain dict).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import free_port

# Keep in step with OTELCOL_VERSION in mk/otelcol.mk.
OTELCOL_VERSION = "v0.148.0"

CONFIG = """\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  file:
    path: {path}
    flush_interval: 50ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer"}


def otelcol_bin() -> Path:
    explicit = os.environ.get("OTELCOL_BIN")
    if explicit:
        return Path(explicit)
    tools = Path(os.environ.get("TOOLS_DIR", Path.home() / ".cache" / "memstore-tools"))
    return tools / f"otelcol-{OTELCOL_VERSION}" / "otelcol"


def _value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return v


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items or []}


class Collector:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self.path = workdir / "traces.jsonl"
        self.config = workdir / "config.yaml"
        self.log_path = workdir / "otelcol.log"
        self.config.write_text(
            CONFIG.format(port=self.port, grpc_port=self.grpc_port, path=self.path)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        binary = otelcol_bin()
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `make tools` (mk/otelcol.mk builds it)")
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [str(binary), "--config", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"otelcol exited: {self.log_path.read_text()[-2000:]}")
            try:
                for port in (self.port, self.grpc_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        pass
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"otelcol did not listen: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far, flattened."""
        out: list[dict[str, Any]] = []
        if not self.path.exists():
            return out
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:  # a line being written right now
                continue
            for rs in doc.get("resourceSpans", []):
                resource = _attrs(rs.get("resource", {}).get("attributes"))
                for ss in rs.get("scopeSpans", []):
                    scope = ss.get("scope", {}).get("name", "")
                    for sp in ss.get("spans", []):
                        out.append(
                            {
                                "trace_id": sp["traceId"],
                                "span_id": sp["spanId"],
                                "parent_span_id": sp.get("parentSpanId", ""),
                                "name": sp["name"],
                                "kind": SPAN_KINDS.get(sp.get("kind", 0), "other"),
                                "attributes": _attrs(sp.get("attributes")),
                                "status": sp.get("status", {}),
                                "events": [e.get("name") for e in sp.get("events", [])],
                                "resource": resource,
                                "scope": scope,
                            }
                        )
        return out

    def wait_for(self, trace_id: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The spans of ``trace_id`` once at least ``count`` arrived (export is batched)."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [s for s in self.spans() if s["trace_id"] == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"only {len(found)} of {count} spans of {trace_id}: {found}")


@pytest.fixture(scope="session")
def otel_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    collector = Collector(tmp_path_factory.mktemp("otelcol")).start()
    try:
        yield collector
    finally:
        collector.stop()
