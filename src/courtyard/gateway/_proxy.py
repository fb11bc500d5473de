"""The client side of the proxy: one state machine per client connection, answering its
requests in order. A request is dispatched only after the packet that completed its head is
parsed whole, so a framing error later in the same packet forwards nothing."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from courtyard.gateway import _headers as h
from courtyard.gateway._config import InvalidTarget
from courtyard.gateway._exchange import Exchange
from courtyard.gateway._headers import (
    accept_prefers_html,
    connection_tokens,
    is_valid_request_id,
    parse_content_length,
)
from courtyard.gateway._paths import parse_target
from courtyard.gateway._requests import RequestRejected, check_head, upstream_head
from courtyard.gateway._responses import (
    CONTINUE,
    error_response,
    json_response,
    redirect_response,
)
from courtyard.gateway._upstream import UpstreamConnection

if TYPE_CHECKING:
    from courtyard.gateway._pool import Instance
    from courtyard.gateway._state import GatewayState, Resolution, Table

# What the connection's single deadline means now (checked by the worker's sweep).
IDLE = 0  # between requests: keep-alive timeout, then close quietly
HEAD = 1  # a request head is arriving: header timeout, then 408
BODY = 2  # the request body is streaming upstream: body timeout since the last byte
WAIT = 3  # waiting for the response head: the route's response timeout, then 504
STREAM = 4  # the response body is streaming: upstream idle timeout since the last byte
TUNNEL = 5  # upgraded: tunnel idle timeout since the last byte either way
CONNECTING = 6  # the connect task enforces the connect timeout itself
LINGER = 7  # answered and half-closed: wait for the client's FIN, then close

_LINGER_SECONDS = 2.0

# Reasons reading from the client is paused (a bit each).
BLOCK_UPSTREAM = 1  # the instance's socket buffer is full
BLOCK_BUFFER = 2  # too much request body held while connecting or queued
BLOCK_QUEUE = 4  # too many pipelined requests

_KINDS = h.REQUEST_KINDS
_DROP = h.DROP
_HOST = h.HOST
_CONTENT_LENGTH = h.CONTENT_LENGTH
_TRANSFER_ENCODING = h.TRANSFER_ENCODING
_CONNECTION = h.CONNECTION
_UPGRADE = h.UPGRADE
_EXPECT = h.EXPECT
_REQUEST_ID = h.REQUEST_ID
_TRACEPARENT = h.TRACEPARENT
_ACCEPT = h.ACCEPT

_INFINITY = float("inf")
_MEMO_TARGET = 256  # longest target whose resolution is memoized
_MEMO_SIZE = 4096  # memoized resolutions per table before starting afresh
_HEALTHZ = b"/healthz"
_READYZ = b"/readyz"
_HEALTH_OK = b'{"status":"ok"}'
_READY_NO = b'{"status":"not ready"}'
_LAST_CHUNK = b"0\r\n\r\n"


class ClientConnection(asyncio.Protocol):
    """One client connection: a queue of exchanges answered in order."""

    __slots__ = (
        "active",
        "broken",
        "client_eof",
        "client_ip",
        "config",
        "current",
        "deadline",
        "head_bytes",
        "head_raw",
        "header_count",
        "in_head",
        "is_closed",
        "kind",
        "parser",
        "pending_error",
        "queue",
        "read_block",
        "state",
        "touched",
        "transport",
        "tunnel",
        "upgrade_buffer",
        "write_paused",
        "xff",
    )

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.config = state.config
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        # No leniency: bare LF, obs-fold, CL+TE, bad chunk framing all stay errors.
        self.parser.set_dangerous_leniencies(
            lenient_headers=False,
            lenient_chunked_length=False,
            lenient_keep_alive=False,
            lenient_transfer_encoding=False,
            lenient_version=False,
            lenient_data_after_close=False,
            lenient_optional_lf_after_cr=False,
            lenient_optional_cr_before_lf=False,
            lenient_optional_crlf_after_chunk=False,
            lenient_spaces_after_chunk_size=False,
        )
        self.current: Exchange | None = None  # being parsed
        self.active: Exchange | None = None  # being answered
        self.queue: deque[Exchange] = deque()  # parsed, waiting for the active one
        self.deadline = _INFINITY
        self.kind = IDLE
        self.touched = False
        self.in_head = False
        self.head_bytes = 0  # request line and complete fields of the head being parsed
        self.head_raw = 0  # bytes of the head line still incomplete
        self.header_count = 0
        self.read_block = 0
        self.write_paused = False
        self.broken = False  # input is no longer read (error answered or pending)
        self.is_closed = False
        self.client_eof = False
        self.pending_error: bytes | None = None
        self.tunnel: UpstreamConnection | None = None
        self.upgrade_buffer: list[bytes] | None = None
        self.client_ip = b"-"
        self.xff = b""

    @property
    def stopping(self) -> bool:
        """True when the worker is shutting down (responses then close the connection)."""
        return self.state.stopping

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; the interface is the same.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client_ip = str(peer[0]).encode()
        # RFC 7239 §5.2 semantics in the de-facto form: only the peer we saw, never a value
        # the client sent.
        self.xff = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % self.client_ip
        state = self.state
        state.connections.add(self)
        self.deadline = state.now + self.config.header_timeout
        self.kind = IDLE

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        self.broken = True
        state = self.state
        state.connections.discard(self)
        self.queue.clear()
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel = None
            tunnel.tunnel = False
            tunnel.close()
        ex = self.active
        if ex is not None and not ex.finished:
            up = ex.up
            if up is not None:
                ex.up = None
                up.abort()
            if ex.status == 0 or not ex.started:
                ex.status = 499  # nginx's "client closed request"
            self._finish(ex)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            self.touched = True
            assert tunnel.transport is not None
            tunnel.transport.write(data)
            return
        if self.broken:
            return
        if self.upgrade_buffer is not None:
            self.upgrade_buffer.append(data)
            self.block_reading(BLOCK_BUFFER)
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            # The request just parsed asked to switch protocols; what follows is not HTTP.
            self.upgrade_buffer = [data[exc.args[0] :]]
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestRejected):
                self._fail(cause.status, cause.detail)
            else:
                self._fail(400, "the request could not be parsed")
            return
        except HttpParserError as exc:
            self._fail(400, f"malformed request: {exc}")
            return
        if self.in_head:
            # Complete fields are counted in on_header; the line still arriving (httptools
            # holds it until its CRLF) is what follows the packet's last LF.
            newline = data.rfind(b"\n")
            if newline == -1:
                self.head_raw += len(data)
            else:
                self.head_raw = len(data) - newline - 1
            if self.head_bytes + self.head_raw > self.config.max_head_bytes:
                self._fail(431, "the request head is too large")
                return
        ex = self.active
        if ex is None:
            if self.queue:
                self._start_next()
        elif ex.body:
            if ex.up is not None:
                self._flush_body(ex)
            elif ex.body_pending > self.config.buffer_bytes:
                self.block_reading(BLOCK_BUFFER)

    def eof_received(self) -> bool | None:
        # As nginx does (499): a client that stops sending has given up on its requests, even
        # if it only half-closed; the transport closes and connection_lost cleans up.
        self.client_eof = True
        return None

    def pause_writing(self) -> None:
        # The client reads the response slower than the instance sends it.
        self.write_paused = True
        ex = self.active
        if ex is not None and ex.up is not None:
            ex.up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.active
        if ex is not None and ex.up is not None:
            ex.up.resume_reading()

    # -- flow control --------------------------------------------------------------------

    def block_reading(self, reason: int) -> None:
        if not self.read_block and self.transport is not None and not self.is_closed:
            self.transport.pause_reading()
        self.read_block |= reason

    def unblock_reading(self, reason: int) -> None:
        if self.read_block & reason:
            self.read_block &= ~reason
            if not self.read_block and self.transport is not None and not self.is_closed:
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """Send response bytes to the client, counted on the active exchange."""
        ex = self.active
        if ex is not None:
            ex.sent += len(data)
        assert self.transport is not None
        self.transport.write(data)

    # -- httptools callbacks (request parsing) -------------------------------------------

    def on_message_begin(self) -> None:
        t0 = self.state.monotonic()
        self.current = Exchange(t0)
        self.in_head = True
        self.head_bytes = 0
        self.head_raw = 0
        self.header_count = 0
        if self.active is None and not self.queue:
            self.deadline = t0 + self.config.header_timeout
            self.kind = HEAD

    def on_url(self, url: bytes) -> None:
        # Usually one call; the length is checked once the head is complete (and the part
        # still arriving is bounded in data_received).
        ex = self.current
        assert ex is not None
        ex.url = ex.url + url if ex.url else url

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.current
        assert ex is not None
        if ex.head_done:
            return  # chunked trailer fields are not forwarded (RFC 9112 §7.1.2)
        self.head_bytes += len(name) + len(value) + 4
        self.header_count += 1
        if self.head_bytes > self.config.max_head_bytes:
            raise RequestRejected(431, "the request head is too large")
        if self.header_count > self.config.max_headers:
            raise RequestRejected(431, "the request has too many header fields")
        kind = _KINDS.get(name.lower())
        if kind is None:
            ex.fwd += (name, b": ", value, b"\r\n")
        elif kind == _DROP:
            pass
        elif kind == _HOST:
            if ex.host is not None:
                raise RequestRejected(400, "the request has more than one Host field")
            ex.host = value.strip(b" \t")
        elif kind == _CONTENT_LENGTH:
            length = parse_content_length(value)
            if length is None or ex.content_length != -1:
                raise RequestRejected(400, "the request has an invalid Content-Length")
            ex.content_length = length
        elif kind == _TRANSFER_ENCODING:
            if ex.te is not None:
                raise RequestRejected(400, "the request repeats Transfer-Encoding")
            ex.te = value
        elif kind == _CONNECTION:
            tokens = connection_tokens(value)
            ex.tokens = tokens if ex.tokens is None else ex.tokens | tokens
        elif kind == _UPGRADE:
            ex.upgrade = value
        elif kind == _EXPECT:
            if value.strip(b" \t").lower() != b"100-continue":
                raise RequestRejected(417, "the only expectation supported is 100-continue")
            ex.expect = True
        elif kind == _REQUEST_ID:
            if ex.request_id is None and is_valid_request_id(value):
                ex.request_id = value
        elif kind == _TRACEPARENT:
            # Two traceparent fields make neither trustworthy (Trace Context §3.2).
            ex.traceparent = value if ex.traceparent is None else b"-"
        elif kind == _ACCEPT:
            ex.accept = value
            ex.fwd += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        ex = self.current
        assert ex is not None
        ex.head_done = True
        self.in_head = False
        if len(ex.url) > self.config.max_url_bytes:
            raise RequestRejected(414, "the request target is too long")
        if self.head_bytes + len(ex.url) > self.config.max_head_bytes:
            raise RequestRejected(431, "the request head is too large")
        parser = self.parser
        ex.keep_alive = parser.should_keep_alive()
        check_head(ex, parser.get_http_version(), parser.get_method(), parser.should_upgrade())
        queue = self.queue
        queue.append(ex)
        if len(queue) > self.config.pipeline_depth:
            self.block_reading(BLOCK_QUEUE)

    def on_body(self, body: bytes) -> None:
        ex = self.current
        assert ex is not None
        size = len(body)
        ex.body_seen += size
        route = ex.route
        if route is not None and ex.body_seen > route.max_body_bytes:
            raise RequestRejected(413, f"the request body exceeds {route.max_body_bytes} bytes")
        if ex.chunked:
            ex.body += (b"%x\r\n" % size, body, b"\r\n")
        else:
            ex.body.append(body)
        ex.body_pending += size
        self.touched = True
        if ex.up is None and ex.body_pending > self.config.buffer_bytes:
            self.block_reading(BLOCK_BUFFER)

    def on_message_complete(self) -> None:
        ex = self.current
        assert ex is not None
        self.current = None
        ex.request_done = True
        if ex.chunked:
            ex.body.append(_LAST_CHUNK)

    # -- answering -----------------------------------------------------------------------

    def _start_next(self) -> None:
        queue = self.queue
        while self.active is None and queue and not self.is_closed:
            self._start(queue.popleft())
        if self.read_block & BLOCK_QUEUE and len(queue) <= self.config.pipeline_depth:
            self.unblock_reading(BLOCK_QUEUE)
        if self.active is None and not queue and self.pending_error is not None:
            self._send_pending_error()

    def _start(self, ex: Exchange) -> None:
        """Route ``ex`` and send it upstream, or answer it here."""
        self.active = ex
        state = self.state
        state.metrics.in_flight += 1
        minted, span = state.ids.ids()
        if ex.request_id is None:
            ex.request_id = minted
        table = state.table
        # Targets and hosts repeat: the resolution of (target, Host) is memoized per table.
        resolution = table.resolved.get((ex.url, ex.host))
        if resolution is None:
            try:
                resolution = self._resolve(table, ex.url, ex.host)
            except InvalidTarget as exc:
                self._answer_error(ex, exc.status, exc.reason)
                return
        path, query, host, route, redirect, target = resolution
        ex.path = path
        if route is None:
            if path in (_HEALTHZ, _READYZ):
                self._answer_health(ex, path)
            elif table.version == 0:
                self._answer_error(
                    ex, 503, "the gateway has no configuration yet", extra=b"Retry-After: 1\r\n"
                )
            else:
                self._answer_error(ex, 404, "no app serves this path")
            return
        ex.app = route.app
        if redirect:
            close = self._must_close(ex)
            data = redirect_response(
                path + b"/" + query, ex.request_id, close=close, date=state.date
            )
            self._answer(ex, 308, data, close)
            return
        if ex.content_length > route.max_body_bytes or ex.body_seen > route.max_body_bytes:
            self._answer_error(
                ex, 413, f"the request body exceeds {route.max_body_bytes} bytes", close=True
            )
            return
        ex.route = route
        ex.head = upstream_head(ex, route, target, host, self.xff, minted, span)
        if ex.expect and not ex.request_done and ex.body_seen == 0:
            # RFC 9110 §10.1.1: the gateway accepted the request, so it asks for the body.
            assert self.transport is not None
            self.transport.write(CONTINUE)
        self._dispatch(ex)

    def _resolve(self, table: Table, url: bytes, host_field: bytes | None) -> Resolution:
        """Normalize the target and route it (raises InvalidTarget); memoized in ``table``."""
        authority, path, query = parse_target(url)
        host = authority if authority is not None else host_field
        key = self.state.host_key(host) if host else None
        found = None if path in (_HEALTHZ, _READYZ) else table.routes.match(key, path)
        if found is None:
            resolution: Resolution = (path, query, host, None, False, b"")
        else:
            route, redirect = found
            resolution = (path, query, host, route, redirect, route.upstream_path(path) + query)
        if len(url) <= _MEMO_TARGET:
            memo = table.resolved
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[url, host_field] = resolution
        return resolution

    def _dispatch(self, ex: Exchange) -> None:
        state = self.state
        route = ex.route
        assert route is not None
        balancer = state.table.balancers.get(route.app)
        instance = balancer.pick(state.now, ex.tried or ()) if balancer is not None else None
        if instance is None:
            self._answer_error(
                ex,
                503,
                f"no instance of {route.app} is available",
                extra=b"Retry-After: 1\r\n",
            )
            return
        ex.instance = instance
        instance.outstanding += 1
        conn = None if ex.fresh else instance.take_idle()
        if conn is not None:
            self._attach(ex, conn)
            return
        self.kind = CONNECTING
        self.deadline = _INFINITY
        task = state.loop.create_task(self._connect(ex, instance))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _connect(self, ex: Exchange, instance: Instance) -> None:
        state = self.state
        route = ex.route
        assert route is not None
        try:
            async with asyncio.timeout(route.connect_timeout):
                _, conn = await state.loop.create_connection(
                    lambda: UpstreamConnection(instance), instance.host, instance.port
                )
        except (OSError, TimeoutError):
            # Passive health check: skip this instance for a while, try another one.
            instance.down_until = state.now + self.config.down_time
            state.metrics.upstream_error(route.app, "connect")
            if ex.finished:
                return
            self._unpick(ex)
            if ex.tried is None:
                ex.tried = []
            ex.tried.append(instance)
            ex.upstream = "connect"
            self._dispatch(ex)
            return
        if ex.finished or self.is_closed:
            # The client left while we connected: keep the connection for the next one.
            if not instance.put_idle(conn, state.now):
                conn.close()
            return
        self._attach(ex, conn)

    def _unpick(self, ex: Exchange) -> None:
        instance = ex.instance
        if instance is not None:
            ex.instance = None
            instance.outstanding -= 1
            if instance.removed and instance.outstanding == 0:
                self.state.settled(instance)

    def _attach(self, ex: Exchange, conn: UpstreamConnection) -> None:
        ex.up = conn
        conn.bind(self, ex)
        data = ex.head
        if ex.body:
            data = b"".join([data, *ex.body])
            ex.body.clear()
            ex.body_pending = 0
            self.unblock_reading(BLOCK_BUFFER)
        if self.write_paused:
            conn.pause_reading()
        assert conn.transport is not None
        conn.transport.write(data)
        route = ex.route
        assert route is not None
        if ex.request_done:
            self.kind = WAIT
            self.deadline = self.state.monotonic() + route.response_timeout
        else:
            self.kind = BODY
            self.deadline = self.state.now + self.config.body_timeout

    def _flush_body(self, ex: Exchange) -> None:
        up = ex.up
        assert up is not None and up.transport is not None
        body = ex.body
        up.transport.write(body[0] if len(body) == 1 else b"".join(body))
        body.clear()
        ex.body_pending = 0
        if self.read_block & BLOCK_BUFFER:
            self.unblock_reading(BLOCK_BUFFER)
        if ex.request_done and self.kind == BODY:
            route = ex.route
            assert route is not None
            self.kind = WAIT
            self.deadline = self.state.monotonic() + route.response_timeout

    # -- called by the upstream connection -----------------------------------------------

    def response_started(self) -> None:
        ex = self.active
        assert ex is not None
        ex.started = True
        if ex.request_done:
            self.kind = STREAM
            self.deadline = self.state.now + self.config.upstream_idle_timeout

    def response_done(self, conn: UpstreamConnection) -> None:
        ex = self.active
        assert ex is not None
        ex.up = None
        instance = conn.instance
        keep = conn.keep and ex.request_done and conn.is_open
        conn.release()
        if not (keep and instance.put_idle(conn, self.state.now)):
            conn.close()
        self._finish(ex)

    def upstream_failed(self, conn: UpstreamConnection, kind: str) -> None:
        ex = self.active
        assert ex is not None
        ex.up = None
        route = ex.route
        assert route is not None
        stale = conn.reused and not conn.received and not ex.has_body and not ex.retried
        conn.abort()
        if stale:
            # A pooled connection the instance had just closed: RFC 9112 §9.3.1 lets us retry
            # a request without a body once, on a new connection.
            ex.retried = True
            ex.fresh = True
            self._unpick(ex)
            self._dispatch(ex)
            return
        self.state.metrics.upstream_error(route.app, kind)
        ex.upstream = kind
        if ex.started:
            self._abort(ex)
            return
        self._answer_error(ex, 502, f"the app {route.app} answered with an error ({kind})")

    def start_tunnel(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The instance agreed to switch protocols: from now on bytes pass through as is."""
        ex = self.active
        assert ex is not None and self.transport is not None
        conn.tunnel = True
        self.tunnel = conn
        ex.started = True
        if rest:
            self.write(rest)
        pending = self.upgrade_buffer or []
        self.upgrade_buffer = None
        data = b"".join(pending)
        if data:
            assert conn.transport is not None
            conn.transport.write(data)
        self.unblock_reading(BLOCK_BUFFER)
        self.kind = TUNNEL
        self.deadline = self.state.now + self.config.tunnel_idle_timeout

    def tunnel_closed(self) -> None:
        """One end of a tunnel closed: close the other after what is queued is written."""
        ex = self.active
        tunnel = self.tunnel
        self.tunnel = None
        if tunnel is not None:
            tunnel.tunnel = False
            tunnel.close()
        if ex is not None:
            ex.up = None
            ex.close_after = True
            self._finish(ex)

    # -- local answers -------------------------------------------------------------------

    def _must_close(self, ex: Exchange) -> bool:
        return (
            ex.close_after
            or not ex.request_done
            or not ex.keep_alive
            or not ex.http11
            or self.upgrade_buffer is not None
            or self.state.stopping
        )

    def _answer(self, ex: Exchange, status: int, data: bytes, close: bool) -> None:
        ex.status = status
        ex.close_after = close
        ex.started = True
        self.write(data)
        self._finish(ex)

    def _answer_error(
        self,
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

    def _answer_health(self, ex: Exchange, path: bytes) -> None:
        if path == _HEALTHZ or self.state.table.version >= 1:
            status, body = 200, _HEALTH_OK
        else:
            status, body = 503, _READY_NO
        close = self._must_close(ex)
        assert ex.request_id is not None
        data = json_response(
            status, body, ex.request_id, close=close, date=self.state.date, head_only=ex.is_head
        )
        self._answer(ex, status, data, close)

    def _fail(self, status: int, detail: str) -> None:
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

    def _record_failure(self, ex: Exchange | None, status: int) -> None:
        state = self.state
        seconds = state.monotonic() - ex.t0 if ex is not None else 0.0
        state.metrics.record("-", status, seconds)

    def _send_pending_error(self) -> None:
        data = self.pending_error
        self.pending_error = None
        if data is not None and self.transport is not None and not self.is_closed:
            self.transport.write(data)
            self._close()

    def _close(self) -> None:
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
        self.deadline = self.state.now + _LINGER_SECONDS

    def _abort(self, ex: Exchange) -> None:
        """The response cannot be completed: closing is the only signal left (RFC 9112 §9.6)."""
        ex.close_after = True
        if self.transport is not None:
            self.transport.abort()
        self._finish(ex)

    def _finish(self, ex: Exchange) -> None:
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
        metrics.record(ex.app, ex.status, seconds if ex.status != 101 else None)
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

    # -- deadlines and shutdown ----------------------------------------------------------

    def on_deadline(self, now: float) -> None:
        """Called by the sweep once ``deadline`` has passed."""
        kind = self.kind
        config = self.config
        if kind in (BODY, STREAM, TUNNEL) and self.touched:
            self.touched = False
            timeout = (
                config.body_timeout
                if kind == BODY
                else config.upstream_idle_timeout
                if kind == STREAM
                else config.tunnel_idle_timeout
            )
            self.deadline = now + timeout
            return
        self.deadline = _INFINITY
        transport = self.transport
        if transport is None or self.is_closed:
            return
        if kind in (IDLE, LINGER):
            self.broken = True
            transport.close()
        elif kind == HEAD:
            self.current = None
            self.in_head = False
            self.broken = True
            request_id = self.state.ids.ids()[0]
            transport.write(
                error_response(
                    408,
                    f"the request head did not arrive within {config.header_timeout:g} s",
                    request_id,
                    html_page=False,
                    close=True,
                    date=self.state.date,
                )
            )
            self._close()
            self.state.metrics.record("-", 408, None)
        elif kind == WAIT:
            ex = self.active
            if ex is None:
                return
            up = ex.up
            ex.up = None
            if up is not None:
                up.abort()
            route = ex.route
            app = route.app if route is not None else "-"
            self.state.metrics.upstream_error(app, "timeout")
            ex.upstream = "timeout"
            seconds = route.response_timeout if route is not None else 0
            self._answer_error(ex, 504, f"the app {app} did not answer within {seconds:g} s")
        else:
            # A stalled body either way, or a silent tunnel: give up on the connection.
            ex = self.active
            if ex is not None:
                if ex.up is not None:
                    up = ex.up
                    ex.up = None
                    up.abort()
                if self.tunnel is not None:
                    self.tunnel = None
                if ex.status == 0:
                    ex.status = 408
                self._abort(ex)
            else:
                self.broken = True
                transport.close()

    def shutdown(self) -> None:
        """The worker stops: close now when idle, else after the current answer."""
        if self.is_closed or self.transport is None:
            return
        if self.active is None and not self.queue and not self.in_head:
            self.broken = True
            self.transport.close()
