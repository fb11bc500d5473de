"""OTLP export against a real OTLP/HTTP receiver on loopback that decodes the protobuf."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from courtyard.contracts import SpanRecord
from courtyard.telemetry import OtlpExporter

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class Collector:
    def __init__(self) -> None:
        self.requests: list[tuple[str, ExportTraceServiceRequest]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                outer.requests.append((self.path, request))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.server.shutdown()
    found.server.server_close()


def span(span_id: str, parent: str | None, service: str, status: int) -> SpanRecord:
    return {
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_id": parent,
        "name": f"GET /{service}/",
        "service": service,
        "kind": "server",
        "start": 1_700_000_000.0,
        "duration": 0.25,
        "status": status,
        "error": status >= 500,
        "attributes": {"app": service},
    }


def test_spans_reach_the_collector_with_their_tree(collector: Collector) -> None:
    exporter = OtlpExporter(collector.url, interval=3600)
    exporter.submit(
        [
            span("00000000000000a1", None, "gateway", 502),
            span("00000000000000b2", "00000000000000a1", "expenses", 200),
        ]
    )
    exporter.flush()
    exporter.close()
    assert exporter.exported == 2 and exporter.dropped == 0
    (path, request) = collector.requests[0]
    assert path == "/v1/traces"
    found = {}
    for resource_spans in request.resource_spans:
        service = next(
            a.value.string_value
            for a in resource_spans.resource.attributes
            if a.key == "service.name"
        )
        for scope in resource_spans.scope_spans:
            for item in scope.spans:
                found[service] = item
    assert set(found) == {"gateway", "expenses"}
    gateway, app = found["gateway"], found["expenses"]
    assert gateway.trace_id.hex() == TRACE and gateway.span_id.hex() == "00000000000000a1"
    assert app.parent_span_id.hex() == "00000000000000a1" and gateway.parent_span_id == b""
    assert gateway.name == "GET /gateway/"
    assert gateway.status.code == 2  # STATUS_CODE_ERROR
    assert app.end_time_unix_nano - app.start_time_unix_nano == 250_000_000


def test_an_unreachable_collector_costs_spans_not_the_node() -> None:
    exporter = OtlpExporter("http://127.0.0.1:9", interval=3600, max_queue=1, timeout=0.5)
    exporter.submit([span("00000000000000a1", None, "gateway", 200)] * 2)
    assert exporter.dropped == 1
    exporter.flush()
    exporter.close()
    assert exporter.exported == 0 and exporter.dropped == 2
