"""How a client connection's exchanges end: answered by the gateway itself (errors, health,
a request that could not be parsed), finished and logged, and the connection closed."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Protocol

from courtyard.contracts import LATENCY_BUCKETS
from courtyard.gateway._access import (
    FORBIDDEN,
    INVALID,
    LOGIN,
    UNAUTHENTICATED,
    login_location,
)
from courtyard.gateway._deadlines import BODY, HEAD, IDLE, LINGER, LINGER_SECONDS
from courtyard.gateway._headers import accept_prefers_html
from courtyard.gateway._metrics import MAX_SPANS, SPAN_ROW, AppCounters
from courtyard.gateway._responses import error_response, json_response, login_response

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from courtyard.gateway._config import GatewayConfig
    from courtyard.gateway._exchange import Exchange
    from courtyard.gateway._state import GatewayState

HEALTHZ = b"/healthz"
READYZ = b"/readyz"
_HEALTH_OK = b'{"status":"ok"}'
_READY_NO = b'{"status":"not ready"}'
# RFC 6750 §3: the challenge of a protected resource; error="invalid_token" (§3.1) when the
# request carried a credential that is not valid.
_CHALLENGE = b'WWW-Authenticate: Bearer realm="courtyard"\r\n'
_CHALLENGE_INVALID = b'WWW-Authenticate: Bearer realm="courtyard", error="invalid_token"\r\n'


class _Client(Protocol):
    """What answering and finishing use of their client connection."""

    state: GatewayState
    config: GatewayConfig
    transport: asyncio.Transport | None
    current: Exchange | None
    active: Exchange | None
    queue: deque[Exchange]
    pending_error: bytes | None
    upgrade_buffer: list[bytes] | None
    client_ip: bytes
    deadline: float
    kind: int
    read_block: int
    in_head: bool
    broken: bool
    is_closed: bool
    client_eof: bool

    def write(self, data: bytes) -> None: ...

    def unblock_reading(self, reason: int) -> None: ...

    def _start_next(self) -> None: ...

    def _unpick(self, ex: Exchange) -> None: ...

    def _must_close(self, ex: Exchange) -> bool: ...

    def _answer(self, ex: Exchange, status: int, data: bytes, close: bool) -> None: ...

    def _answer_error(
        self,
        ex: Exchange,
        status: int,
        detail: str,
        *,
        close: bool = False,
        extra: bytes = b"",
    ) -> None: ...

    def _record_failure(self, ex: Exchange | None, status: int) -> None: ...

    def _count_unrouted(self, status: int, seconds: float | None) -> None: ...

    def _send_pending_error(self) -> None: ...

    def _close(self) -> None: ...

    def _abort(self, ex: Exchange) -> None: ...

    def _finish(self, ex: Exchange) -> None: ...

    def _observe(self, ex: Exchange, wall: float, seconds: float) -> None: ...


class AnswerMixin:
    """How ``ClientConnection`` answers and finishes exchanges, mixed into it."""

    __slots__ = ()

    # What the methods below assign, typed as on ClientConnection (mypy would otherwise
    # infer these attributes from the assignments).
    active: Exchange | None
    current: Exchange | None
    pending_error: bytes | None
    deadline: float
    kind: int
    in_head: bool
    broken: bool

    def _must_close(self: _Client, ex: Exchange) -> bool:
        return (
            ex.close_after
            or not ex.request_done
            or not ex.keep_alive
            or not ex.http11
            or self.upgrade_buffer is not None
            or self.state.stopping
        )

    def _answer(self: _Client, ex: Exchange, status: int, data: bytes, close: bool) -> None:
        ex.status = status
        ex.close_after = close
        ex.started = True
        self.write(data)
        self._finish(ex)

    def _answer_error(
        self: _Client,
        ex: Exchange,
        status: int,
        detail: str,
        *,
        close: bool = False,
        extra: bytes = b"",
    ) -> None:
        close = close or self._must_close(ex)
        request_id = ex.request_id or self.state.ids.ids()[0]
        data = error_response(
            status,
            detail,
            request_id,
            html_page=accept_prefers_html(ex.accept),
            close=close,
            date=self.state.date,
            head_only=ex.is_head,
            extra=extra,
        )
        self._answer(ex, status, data, close)

    def _answer_health(self: _Client, ex: Exchange, path: bytes) -> None:
        if path == HEALTHZ or self.state.table.version >= 1:
            status, body = 200, _HEALTH_OK
        else:
            status, body = 503, _READY_NO
        close = self._must_close(ex)
        assert ex.request_id is not None
        data = json_response(
            status, body, ex.request_id, close=close, date=self.state.date, head_only=ex.is_head
        )
        self._answer(ex, status, data, close)

    def _answer_access(
        self: _Client, ex: Exchange, verdict: int, path: bytes, query: bytes
    ) -> None:
        """Answer a request the access gate refused (the reason stays in the denial: the
        client learns only what to do next)."""
        if verdict == LOGIN:
            close = self._must_close(ex)
            assert ex.request_id is not None
            location = login_location(self.state.access.login_path, path, query)
            data = login_response(location, ex.request_id, close=close, date=self.state.date)
            self._answer(ex, 302, data, close)
        elif verdict == UNAUTHENTICATED:
            self._answer_error(ex, 401, "sign in to open this app", extra=_CHALLENGE)
        elif verdict == INVALID:
            detail = "the credential is not valid (expired, revoked or unknown)"
            self._answer_error(ex, 401, detail, extra=_CHALLENGE_INVALID)
        elif verdict == FORBIDDEN:
            self._answer_error(ex, 403, "you do not have access to this app")
        else:
            self._answer_error(ex, 503, "sign-in is not configured")

    def _fail(self: _Client, status: int, detail: str) -> None:
        """The request being parsed is broken: answer ``status`` in turn and close."""
        self.broken = True
        self.in_head = False
        ex = self.current
        self.current = None
        if self.transport is not None and not self.is_closed:
            self.transport.pause_reading()
        if ex is not None and ex is self.active:
            # Broken mid-body while being proxied (bad chunk, body over the limit).
            up = ex.up
            if up is not None:
                ex.up = None
                up.abort()
            if ex.started:
                self._abort(ex)
                return
            self._unpick(ex)
            self._answer_error(ex, status, detail, close=True)
            return
        if ex is not None and ex in self.queue:
            self.queue.remove(ex)
        request_id = self.state.ids.ids()[0]
        accept = ex.accept if ex is not None else None
        self.pending_error = error_response(
            status,
            detail,
            request_id,
            html_page=accept_prefers_html(accept),
            close=True,
            date=self.state.date,
        )
        self._record_failure(ex, status)
        if self.active is None and not self.queue:
            self._send_pending_error()

    def _record_failure(self: _Client, ex: Exchange | None, status: int) -> None:
        state = self.state
        if state.config.telemetry:
            self._count_unrouted(status, state.monotonic() - ex.t0 if ex is not None else 0.0)

    def _count_unrouted(self: _Client, status: int, seconds: float | None) -> None:
        """Count an answer given before any app was chosen (the mesh listener overrides this:
        its calls are mesh metrics)."""
        self.state.metrics.record("-", "-", status, seconds)

    def _send_pending_error(self: _Client) -> None:
        data = self.pending_error
        self.pending_error = None
        if data is not None and self.transport is not None and not self.is_closed:
            self.transport.write(data)
            self._close()

    def _close(self: _Client) -> None:
        """Close after the answer: half-close and drain what the client still sends, so its
        socket does not reset and discard the answer (a lingering close, as nginx does)."""
        self.broken = True
        transport = self.transport
        if transport is None or self.is_closed:
            return
        if self.client_eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.unblock_reading(self.read_block)
        transport.resume_reading()
        self.kind = LINGER
        self.deadline = self.state.now + LINGER_SECONDS

    def _abort(self: _Client, ex: Exchange) -> None:
        """The response cannot be completed: closing is the only signal left (RFC 9112 §9.6)."""
        ex.close_after = True
        if self.transport is not None:
            self.transport.abort()
        self._finish(ex)

    def _observe(self: _Client, ex: Exchange, wall: float, seconds: float) -> None:
        """Count ``ex`` in the metrics, and keep its span when its trace is recorded (a 5xx is
        kept even when not sampled: an error is what one looks for).

        This runs for every request, so it is Metrics.record and Metrics.span inlined: one
        dictionary probe and a few increments; for a recorded trace, one more probe and one
        row formatted (now, while its values are still in the processor's cache)."""
        metrics = self.state.metrics
        status = ex.status
        caller = ex.caller
        route = ex.route
        label = route.label if route is not None else "-"
        if caller:
            # A call through the mesh listener: a mesh metric, never a gateway request.
            table = metrics.mesh
            key = (caller, ex.app)
        else:
            table = metrics.apps
            key = (ex.app, label)
        counters = table.get(key)
        if counters is None:
            counters = table[key] = AppCounters()
        counters.classes[status // 100 if 100 <= status < 600 else 5] += 1
        if status != 101:  # an upgraded connection's lifetime is no response time
            counters.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            counters.sum += seconds
            counters.count += 1
        trace = ex.trace
        if trace is None or not (trace[3] or status >= 500) or not ex.traced:
            return
        spans = metrics.spans
        if len(spans) >= MAX_SPANS:
            metrics.dropped += 1
            return
        instance = ex.instance
        kinds = metrics.kinds
        span_kind = (ex.method, ex.app, label, caller, instance.id if instance else None)
        number = kinds.get(span_kind)
        if number is None:
            number = kinds[span_kind] = len(kinds)
        parent = trace[2]
        spans.append(
            SPAN_ROW
            % (
                trace[0],
                trace[1],
                b'"' + parent + b'"' if parent else b"null",
                int((wall - seconds) * 1e6),
                int(seconds * 1e6),
                status,
                number,
                ex.request_id,
            )
        )

    def _finish(self: _Client, ex: Exchange) -> None:
        if ex.finished:
            return
        ex.finished = True
        state = self.state
        instance = ex.instance
        if instance is not None:
            instance.outstanding -= 1
            if instance.removed and instance.outstanding == 0:
                state.settled(instance)
        metrics = state.metrics
        metrics.in_flight -= 1
        end = state.monotonic()
        seconds = end - ex.t0
        if state.config.telemetry:
            self._observe(ex, end + state.wall_offset, seconds)
        log = state.access_log
        if log is not None:
            assert ex.request_id is not None
            log.record(
                end + state.wall_offset,
                ex.request_id,
                ex.method,
                ex.path or ex.url.partition(b"?")[0],  # the raw path when it was refused
                ex.status,
                ex.sent,
                seconds,
                ex.app.encode(),
                instance.log_id if instance is not None else b"null",
                self.client_ip,
                b"%d" % ex.upstream_status if ex.upstream_status else ex.upstream.encode(),
                ex.trace[0] if ex.trace is not None else b"",
            )
        if self.active is ex:
            self.active = None
        if self.is_closed:
            return
        if ex.close_after:
            self._close()
            return
        if self.queue:
            self._start_next()
            return
        if self.pending_error is not None:
            self._send_pending_error()
            return
        if state.stopping or self.client_eof:
            self._close()
            return
        current = self.current
        if current is not None and self.in_head:
            self.kind = HEAD
            self.deadline = current.t0 + self.config.header_timeout
        elif current is not None:
            self.kind = BODY
            self.deadline = end + self.config.body_timeout
        else:
            self.kind = IDLE
            self.deadline = end + self.config.keepalive_timeout
