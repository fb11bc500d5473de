"""The admin listener: Prometheus metrics of the gateway workers and of this process."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def admin_app(gateway_metrics: Callable[[], str]) -> Starlette:
    """``/metrics`` (gateway metrics summed over workers, then process metrics) and ``/healthz``."""

    async def metrics(_: Request) -> Response:
        body = gateway_metrics() + generate_latest(REGISTRY).decode()
        return PlainTextResponse(body, media_type=PROMETHEUS_TEXT)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
