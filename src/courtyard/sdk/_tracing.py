"""Tracing for apps: W3C Trace Context (https://www.w3.org/TR/trace-context/) continued from
the gateway or the mesh, a server span per request, and the spans sent to the platform's
trace store through the mesh (``POST {COURTYARD_MESH_URL}/_traces``).

The current span lives in a context variable, so concurrent requests never see each other's
and the mesh clients continue the right trace by themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from courtyard.contracts import TRACES_SERVICE, SpanRecord

log = logging.getLogger("courtyard.sdk")

TRACEPARENT = "traceparent"
# The platform's health checks call these every second: tracing them would bury real traces.
UNTRACED = ("/healthz", "/readyz")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class SpanContext:
    """Where the current code is in a trace."""

    trace_id: str
    span_id: str
    sampled: bool
    request_id: str | None = None

    def traceparent(self) -> str:
        """The ``traceparent`` value naming this span as the parent of a call it makes."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


_current: ContextVar[SpanContext | None] = ContextVar("courtyard_span", default=None)


def current_span() -> SpanContext | None:
    """The span the running code is in, if any."""
    return _current.get()


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a valid header, else None (Trace Context §3.2:
    version ff and all-zero ids are invalid; version 00 has exactly four fields)."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent == _ZERO_SPAN:
        return None
    return trace_id, parent, bool(int(flags, 16) & 1)


def _new_id(size: int) -> str:
    return os.urandom(size).hex()


class SpanExporter:
    """Sends finished spans to the platform in the background (never blocks a request).

    Spans wait in a bounded queue (``max_queue``; more are dropped and counted) and go in
    batches of up to ``batch`` every ``interval`` seconds, each POST authenticated with the
    app's workload credential.
    """

    def __init__(
        self,
        url: str,
        credential: Callable[[], str],
        *,
        interval: float = 1.0,
        batch: int = 100,
        max_queue: int = 10_000,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/" + TRACES_SERVICE
        self._credential = credential
        self._interval = interval
        self._batch = batch
        self._queue: queue.Queue[SpanRecord] = queue.Queue(max_queue)
        self._http = client or httpx.Client(timeout=5.0)
        self.dropped = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="courtyard-spans", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def export(self, span: SpanRecord) -> None:
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        """Send what is queued now (in the calling thread)."""
        while True:
            spans = self._take()
            if not spans:
                return
            self._send(spans)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.flush()
        self._http.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # the exporter must never break the app
                self.flush()

    def _take(self) -> list[SpanRecord]:
        spans: list[SpanRecord] = []
        while len(spans) < self._batch:
            try:
                spans.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return spans

    def _send(self, spans: list[SpanRecord]) -> None:
        try:
            answer = self._http.post(
                self.url,
                json={"spans": spans},
                headers={"Authorization": f"Bearer {self._credential()}"},
            )
        except Exception as exc:  # no mesh, no credential: spans are lost, the app goes on
            log.debug("span report failed: %s", exc)
            self.dropped += len(spans)
            return
        if answer.status_code >= 300:
            log.debug("span report refused: HTTP %d", answer.status_code)
            self.dropped += len(spans)
        else:
            self.sent += len(spans)


def exporter_from_env(environ: Mapping[str, str] | None = None) -> SpanExporter | None:
    """An exporter to the mesh named by the environment, or None outside Courtyard."""
    from courtyard.sdk._mesh import CREDENTIAL_ENV, MESH_URL_ENV, CredentialFile  # noqa: PLC0415

    env = os.environ if environ is None else environ
    url, path = env.get(MESH_URL_ENV, ""), env.get(CREDENTIAL_ENV, "")
    if not url or not path:
        return None
    return SpanExporter(url, CredentialFile(path).token)


class _Recorder:
    """Starts and finishes server spans; shared by the ASGI and WSGI middleware."""

    def __init__(
        self, service: str | None, exporter: SpanExporter | Callable[[SpanRecord], None] | None
    ) -> None:
        self.service = service or os.environ.get("COURTYARD_APP", "app")
        if isinstance(exporter, SpanExporter):
            self.export: Callable[[SpanRecord], None] | None = exporter.export
        else:
            self.export = exporter

    def start(self, traceparent: str | None, request_id: str | None) -> tuple[SpanContext, str]:
        parsed = parse_traceparent(traceparent)
        if parsed is None:
            trace_id, parent, sampled = _new_id(16), "", True
        else:
            trace_id, parent, sampled = parsed
        return SpanContext(trace_id, _new_id(8), sampled, request_id), parent

    def finish(
        self,
        context: SpanContext,
        parent: str,
        name: str,
        start: float,
        duration: float,
        status: int,
        error: bool,
        attributes: dict[str, str | int | float | bool],
        kind: str = "server",
    ) -> None:
        if self.export is None or not (context.sampled or error):
            return
        record: SpanRecord = {
            "trace_id": context.trace_id,
            "span_id": context.span_id,
            "parent_id": parent or None,
            "name": name[:200],
            "service": self.service,
            "kind": kind,  # type: ignore[typeddict-item]
            "start": start,
            "duration": duration,
            "status": status,
            "error": error,
            "attributes": attributes,
        }
        try:
            self.export(record)
        except Exception:  # an exporter's failure must not fail the request
            log.debug("span export failed", exc_info=True)


def _route_name(scope: Mapping[str, Any]) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


class TracingMiddleware:
    """ASGI middleware: a server span per HTTP request, continuing the caller's trace."""

    def __init__(
        self,
        app: Any,
        *,
        service: str | None = None,
        exporter: SpanExporter | Callable[[SpanRecord], None] | None = None,
        exempt_paths: Iterable[str] = UNTRACED,
    ) -> None:
        self.app = app
        self._recorder = _Recorder(service, exporter)
        self._exempt = frozenset(exempt_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") in self._exempt:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        context, parent = self._recorder.start(
            headers.get(TRACEPARENT), headers.get("x-request-id")
        )
        token = _current.set(context)
        status = 0
        start_wall, start = time.time(), time.perf_counter()

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            failed = True
            raise
        finally:
            _current.reset(token)
            method = scope.get("method", "GET")
            route = _route_name(scope)
            self._recorder.finish(
                context,
                parent,
                f"{method} {route}" if route else method,
                start_wall,
                time.perf_counter() - start,
                status or (500 if failed else 0),
                failed or status >= 500,
                {"http.method": method, "http.status_code": status, "url.path": scope["path"]},
            )


class TracingWSGI:
    """WSGI middleware: a server span per request, continuing the caller's trace."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        service: str | None = None,
        exporter: SpanExporter | Callable[[SpanRecord], None] | None = None,
        exempt_paths: Iterable[str] = UNTRACED,
    ) -> None:
        self.app = app
        self._recorder = _Recorder(service, exporter)
        self._exempt = frozenset(exempt_paths)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") in self._exempt:
            return self.app(environ, start_response)
        context, parent = self._recorder.start(
            environ.get("HTTP_TRACEPARENT"), environ.get("HTTP_X_REQUEST_ID")
        )
        token = _current.set(context)
        status = 0
        start_wall, start = time.time(), time.perf_counter()

        def record_status(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            nonlocal status
            status = int(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        failed = False
        try:
            return list(self.app(environ, record_status))
        except BaseException:
            failed = True
            raise
        finally:
            _current.reset(token)
            method = environ.get("REQUEST_METHOD", "GET")
            self._recorder.finish(
                context,
                parent,
                method,
                start_wall,
                time.perf_counter() - start,
                status or (500 if failed else 0),
                failed or status >= 500,
                {
                    "http.method": method,
                    "http.status_code": status,
                    "url.path": environ.get("PATH_INFO", ""),
                },
            )
