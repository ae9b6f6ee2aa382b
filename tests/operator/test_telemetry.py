"""The operator's own metrics (Prometheus text, parsed with prometheus-client's parser)
and its reconcile spans, exported over OTLP/HTTP by the real SDK exporter to a small
OTLP receiver in this test (an HTTP server that decodes the protobuf requests with
opentelemetry-proto), plus the Event and status of a spec that slips past the schema."""

from __future__ import annotations

import gzip
import platform
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from memstore_operator.telemetry import Telemetry
from tests.operator.conftest import Cluster, OperatorProcess
from tests.servers.kube import KubeAPI
from tests.support.waiting import wait_for


class OTLPReceiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                req = ExportTraceServiceRequest()
                req.ParseFromString(raw)
                receiver.add(req)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, req: ExportTraceServiceRequest) -> None:
        for rs in req.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    attrs: dict[str, Any] = {}
                    for a in sp.attributes:
                        v = a.value
                        attrs[a.key] = (
                            v.string_value
                            if v.HasField("string_value")
                            else v.int_value
                            if v.HasField("int_value")
                            else v.bool_value
                        )
                    with self.lock:
                        self.spans.append(
                            {
                                "name": sp.name,
                                "trace_id": sp.trace_id.hex(),
                                "span_id": sp.span_id.hex(),
                                "parent": sp.parent_span_id.hex(),
                                "attrs": attrs,
                                "status": sp.status.code,
                                "resource": resource,
                            }
                        )


@pytest.fixture
def otlp() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def samples(op: OperatorProcess) -> list[Sample]:
    out: list[Sample] = []
    for fam in text_string_to_metric_families(op.metrics()):
        out.extend(fam.samples)
    return out


def value(op: OperatorProcess, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples(op)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_spans_and_an_invalid_spec_past_the_schema(
    operator_proc: OperatorProcess,
    kube_api: KubeAPI,
    kube_namespace: str,
    otlp: OTLPReceiver,
) -> None:
    op = operator_proc
    op.stop()
    op.start(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_SERVICE_NAME": "memstore-operator-test",
        }
    )
    c = Cluster(kube_api, kube_namespace)
    c.apply("tel", {"backend": {"type": "embedded"}})
    wait_for(
        lambda: value(op, "memstore_operator_reconciles_total", trigger="create", result="ok") >= 1,
        what="a counted create reconcile",
    )

    # Spans: reconcile MemoryStore -> apply <Kind> / check backend / patch status.
    def reconcile_tree() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        with otlp.lock:
            spans = list(otlp.spans)
        for root in spans:
            if (
                root["name"] == "reconcile MemoryStore"
                and root["attrs"].get("memstore.name") == "tel"
                and root["attrs"].get("memstore.trigger") == "create"
            ):
                kids = [s for s in spans if s["parent"] == root["span_id"]]
                names = {k["name"] for k in kids}
                if {"apply Deployment", "check backend", "patch status"} <= names:
                    return root, kids
        return None

    root, kids = wait_for(reconcile_tree, what="the reconcile span tree")
    assert root["parent"] == ""
    assert root["resource"]["service.name"] == "memstore-operator-test"
    assert root["attrs"]["k8s.namespace.name"] == kube_namespace
    assert root["attrs"]["memstore.phase"] in ("Progressing", "Ready")
    assert {k["trace_id"] for k in kids} == {root["trace_id"]}
    names = [k["name"] for k in kids]
    assert names.count("apply Deployment") == 1
    assert "create Secret" in names
    check = next(k for k in kids if k["name"] == "check backend")
    assert check["attrs"]["memstore.backend"] == "embedded"

    # An affinity is passed through unchecked by the CRD (preserve-unknown-fields); the
    # apiserver refuses it on the Deployment: PermanentError, a Failed status, an Event.
    bad = {
        "backend": {"type": "embedded"},
        "scheduling": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": 7}}
        },
    }
    c.apply("badaff", bad)
    wait_for(
        lambda: (c.store("badaff").get("status") or {}).get("phase") == "Failed", what="Failed"
    )
    ready = c.condition("badaff", "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "the API server refused a child object" in ready["message"]
    wait_for(
        lambda: (
            "InvalidSpec"
            in c.kubectl(
                "get", "events", "--field-selector=involvedObject.name=badaff", "-o", "json"
            ).stdout
        ),
        what="an InvalidSpec Event",
    )
    assert c.obj("Deployment", "badaff") is None
    wait_for(
        lambda: value(op, "memstore_operator_reconciles_total", result="invalid") >= 1,
        what="a counted invalid reconcile",
    )
    assert value(op, "memstore_operator_reconcile_errors_total", error="InvalidSpec") >= 1
    # Fixing the spec recovers.
    c.apply("badaff", {"backend": {"type": "embedded"}})
    wait_for(lambda: c.obj("Deployment", "badaff"), what="the Deployment after the fix")
    wait_for(
        lambda: (c.store("badaff").get("status") or {}).get("phase") == "Progressing",
        what="Progressing after the fix",
    )

    # Metrics: counts, histogram buckets, backend checks, stores by phase.
    wait_for(
        lambda: value(op, "memstore_operator_reconciles_total", trigger="resync") >= 2,
        what="resync passes",
    )
    buckets = [
        s for s in samples(op) if s.name == "memstore_operator_reconcile_duration_seconds_bucket"
    ]
    les = {s.labels["le"] for s in buckets if s.labels["trigger"] == "create"}
    assert {"0.005", "1.0", "30.0", "+Inf"} <= les
    create_count = value(op, "memstore_operator_reconcile_duration_seconds_count", trigger="create")
    assert create_count >= 1
    inf = value(
        op, "memstore_operator_reconcile_duration_seconds_bucket", trigger="create", le="+Inf"
    )
    assert inf == create_count
    assert value(op, "memstore_operator_backend_checks_total", backend="embedded", result="ok") >= 1
    assert value(op, "memstore_operator_stores", phase="Progressing") >= 1
    # Label values stay bounded: no store names in any label.
    for s in samples(op):
        assert "tel" not in s.labels.values()
        assert "badaff" not in s.labels.values()
    op.stop()


def test_build_info_and_process_metrics() -> None:
    telemetry = Telemetry()
    text = generate_latest(telemetry.registry).decode()
    found = [s for f in text_string_to_metric_families(text) for s in f.samples]
    (build,) = [s for s in found if s.name == "memstore_operator_build_info"]
    assert build.value == 1
    assert build.labels == {"version": version("memstore"), "python": platform.python_version()}
    names = {s.name for s in found}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
