"""Binds each control-plane request's ids into the log context (pure ASGI, no buffering)."""

from __future__ import annotations

import re
from typing import Any

from courtyard.transport import request_context

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


class LogContextMiddleware:
    """Log lines written while a request is served carry its X-Request-Id and trace id (from
    the W3C traceparent the gateway sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request_id = trace_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:200]
            elif name == b"traceparent":
                match = _TRACEPARENT.fullmatch(value.decode("latin-1").strip())
                trace_id = match[1] if match else None
        with request_context(request_id, trace_id):
            await self.app(scope, receive, send)
