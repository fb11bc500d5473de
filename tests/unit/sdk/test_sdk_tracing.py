"""The SDK's tracing: W3C traceparent continued or started, one server span per request, the
current span isolated per request, mesh calls continuing it, spans sent through the mesh."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from courtyard.contracts import SpanRecord
from courtyard.sdk import (
    MeshClient,
    SpanExporter,
    TracingMiddleware,
    TracingWSGI,
    current_span,
    exporter_from_env,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def traced_app(spans: list[SpanRecord]) -> Any:
    async def hello(request: Request) -> Response:
        span = current_span()
        assert span is not None
        await asyncio.sleep(0)
        return JSONResponse({"trace": span.trace_id, "span": span.span_id})

    async def boom(request: Request) -> Response:
        return JSONResponse({}, status_code=503)

    app = Starlette(routes=[Route("/items/{id}", hello), Route("/boom", boom)])
    return TracingMiddleware(app, service="shop", exporter=spans.append)


async def get(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        return await client.get(path, headers=headers)


async def test_a_request_continues_the_callers_trace() -> None:
    spans: list[SpanRecord] = []
    answer = await get(traced_app(spans), "/items/7", {"traceparent": f"00-{TRACE}-{PARENT}-01"})
    body = answer.json()
    (span,) = spans
    assert body["trace"] == TRACE == span["trace_id"]
    assert span["span_id"] == body["span"] and span["parent_id"] == PARENT
    assert span["name"] == "GET /items/{id}"  # the route template, not the path
    assert span["service"] == "shop" and span["status"] == 200 and not span["error"]
    assert span.get("attributes", {})["url.path"] == "/items/7"


@pytest.mark.parametrize("header", [None, "garbage", f"ff-{TRACE}-{PARENT}-01"])
async def test_no_or_bad_traceparent_starts_a_trace(header: str | None) -> None:
    spans: list[SpanRecord] = []
    await get(traced_app(spans), "/items/1", {"traceparent": header} if header else None)
    (span,) = spans
    assert span["parent_id"] is None and span["trace_id"] != TRACE


async def test_unsampled_traces_export_only_errors() -> None:
    spans: list[SpanRecord] = []
    unsampled = {"traceparent": f"00-{TRACE}-{PARENT}-00"}
    await get(traced_app(spans), "/items/1", unsampled)
    await get(traced_app(spans), "/boom", unsampled)
    assert [(s["status"], s["error"]) for s in spans] == [(503, True)]


async def test_concurrent_requests_keep_their_own_span() -> None:
    spans: list[SpanRecord] = []
    app = traced_app(spans)
    answers = await asyncio.gather(*(get(app, f"/items/{n}") for n in range(20)))
    assert len({a.json()["trace"] for a in answers}) == 20
    assert current_span() is None


def test_wsgi_requests_get_spans_too() -> None:
    spans: list[SpanRecord] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        assert current_span() is not None
        start_response("500 Internal Server Error", [])
        return [b"no"]

    traced = TracingWSGI(app, service="notes", exporter=spans.append)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/n",
        "HTTP_TRACEPARENT": f"00-{TRACE}-{PARENT}-01",
    }
    assert traced(environ, lambda *a: None) == [b"no"]
    (span,) = spans
    assert (span["trace_id"], span["parent_id"], span["error"]) == (TRACE, PARENT, True)


def test_mesh_calls_continue_the_current_span() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={})

    spans: list[SpanRecord] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        client = MeshClient("http://mesh", "token", transport=httpx.MockTransport(handler))
        client.call("notes", "/notes")
        start_response("200 OK", [])
        return [b""]

    TracingWSGI(app, exporter=spans.append)(
        {"REQUEST_METHOD": "GET", "HTTP_TRACEPARENT": f"00-{TRACE}-{PARENT}-01"}, lambda *a: None
    )
    (span,) = spans
    assert seen == [f"00-{TRACE}-{span['span_id']}-01"]


class Collector:
    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posts.append((self.path, self.headers["Authorization"], body))
                self.send_response(202)
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


def span(n: int) -> SpanRecord:
    return {
        "trace_id": TRACE,
        "span_id": f"{n:016x}",
        "parent_id": None,
        "name": "GET",
        "service": "shop",
        "kind": "server",
        "start": 1.0,
        "duration": 0.1,
        "status": 200,
        "error": False,
    }


def test_the_exporter_posts_batches_through_the_mesh(collector: Collector) -> None:
    exporter = SpanExporter(collector.url, lambda: "workload-jwt", interval=3600, batch=2)
    for n in range(3):
        exporter.export(span(n))
    exporter.flush()
    exporter.close()
    assert [(path, auth) for path, auth, _ in collector.posts] == [
        ("/_traces", "Bearer workload-jwt"),
        ("/_traces", "Bearer workload-jwt"),
    ]
    assert [len(body["spans"]) for _, _, body in collector.posts] == [2, 1]
    assert exporter.sent == 3


def test_the_exporter_drops_when_full_and_never_raises() -> None:
    exporter = SpanExporter("http://127.0.0.1:9", lambda: "x", interval=3600, max_queue=2)
    for n in range(5):
        exporter.export(span(n))
    assert exporter.dropped == 3
    exporter.flush()  # nothing listens there: counted as dropped, not raised
    assert exporter.dropped == 5
    exporter.close()


def test_no_exporter_outside_courtyard() -> None:
    assert exporter_from_env({}) is None


async def test_health_checks_are_not_traced() -> None:
    spans: list[SpanRecord] = []

    async def ok(request: Request) -> Response:
        return JSONResponse({})

    app = TracingMiddleware(Starlette(routes=[Route("/healthz", ok)]), exporter=spans.append)
    assert (await get(app, "/healthz")).status_code == 200
    assert spans == []
