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
from courtyard.gateway._answers import HEALTHZ, READYZ, AnswerMixin
from courtyard.gateway._config import InvalidTarget
from courtyard.gateway._deadlines import HEAD, IDLE, DeadlineMixin
from courtyard.gateway._dispatch import BLOCK_BUFFER, BLOCK_QUEUE, DispatchMixin
from courtyard.gateway._exchange import Exchange
from courtyard.gateway._headers import (
    connection_tokens,
    is_valid_request_id,
    parse_content_length,
)
from courtyard.gateway._paths import parse_target
from courtyard.gateway._requests import RequestRejected, check_head, upstream_head
from courtyard.gateway._responses import CONTINUE, redirect_response

if TYPE_CHECKING:
    from courtyard.gateway._state import GatewayState, Resolution, Table
    from courtyard.gateway._upstream import UpstreamConnection

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
_COOKIE = h.COOKIE
_AUTHORIZATION = h.AUTHORIZATION
_KIND_OF = h.request_kind

_INFINITY = float("inf")
_MEMO_TARGET = 256  # longest target whose resolution is memoized
_MEMO_SIZE = 4096  # memoized resolutions per table before starting afresh
_LAST_CHUNK = b"0\r\n\r\n"


class ClientConnection(AnswerMixin, DeadlineMixin, DispatchMixin, asyncio.Protocol):
    """One client connection: a queue of exchanges answered in order.

    Parsing and starting requests live here; the mixins hold how exchanges end
    (``_answers``), the deadlines (``_deadlines``) and the upstream side (``_dispatch``)."""

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
        proto = b"https" if transport.get_extra_info("sslcontext") is not None else b"http"
        self.xff = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (self.client_ip, proto)
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

    # -- writing to the client -----------------------------------------------------------

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
        if kind is None and b"_" in name:
            kind = _KIND_OF(name)  # X_Forwarded-For, courtyard_identity, ...
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
        elif kind == _COOKIE:
            # RFC 9113 §8.2.3 / RFC 6265 §5.4: several Cookie fields make one list.
            ex.cookie = value if ex.cookie is None else ex.cookie + b"; " + value
        elif kind == _AUTHORIZATION:
            if ex.authorization is not None:
                raise RequestRejected(400, "the request repeats Authorization")
            ex.authorization = value

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

    # -- starting exchanges --------------------------------------------------------------

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
            if path in (HEALTHZ, READYZ):
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
        verdict = state.access.check(ex, route.app, state.now + state.wall_offset, self.client_ip)
        if verdict:
            self._answer_access(ex, verdict, path, query)
            return
        ex.route = route
        ex.head = upstream_head(
            ex, route, target, host, self.xff, minted, span, state.config.trace_sample
        )
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
        found = None if path in (HEALTHZ, READYZ) else table.routes.match(key, path)
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
