"""Structured logs: one JSON object per line, with the component and the request's ids."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from courtyard.node._logcontext import LogContextMiddleware
from courtyard.transport import configure_logging, request_context


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)  # the stream, not our code
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("control-plane", level="INFO")
    yield captured
    root.handlers, root.level = handlers, level


def lines(captured: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.getvalue().splitlines()]


def test_every_record_is_a_json_line_with_the_request_ids(stderr: io.StringIO) -> None:
    log = logging.getLogger("courtyard.test")
    log.info("outside a request")
    with request_context("req-1", "4bf92f3577b34da6a3ce929d0e0e4736"):
        log.warning("deploy %s refused", "shop")
    first, second = lines(stderr)
    assert first["event"] == "outside a request" and "request_id" not in first
    assert first["component"] == "control-plane" and first["level"] == "info"
    assert second["event"] == "deploy shop refused"
    assert second["request_id"] == "req-1"
    assert second["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert second["logger"] == "courtyard.test" and str(second["time"]).endswith("Z")


async def test_the_api_middleware_binds_the_ids(stderr: io.StringIO) -> None:
    async def handler(request: Request) -> Response:
        logging.getLogger("courtyard.api").info("handled")
        return Response("ok")

    app = LogContextMiddleware(Starlette(routes=[Route("/", handler)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        await client.get(
            "/",
            headers={
                "X-Request-Id": "abc",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            },
        )
    (line,) = [line for line in lines(stderr) if line["event"] == "handled"]
    assert line["request_id"] == "abc" and line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
