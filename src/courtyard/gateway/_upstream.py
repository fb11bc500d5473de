"""The gateway's side of a keep-alive connection to an app instance.

It parses responses with httptools and re-frames them for the client as they stream:
hop-by-hop fields removed (RFC 9110 §7.6.1), Content-Length kept, anything else chunked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from courtyard.gateway import _headers as h
from courtyard.gateway._headers import CONNECTION_OPTIONS, connection_tokens, without_fields
from courtyard.gateway._responses import status_line

if TYPE_CHECKING:
    from courtyard.gateway._exchange import Exchange
    from courtyard.gateway._pool import Instance
    from courtyard.gateway._proxy import ClientConnection

# How the response body reaches the client.
NO_BODY = 0  # HEAD, 204, 304: nothing follows the head
LENGTH = 1  # Content-Length, passed as is
CHUNKED = 2  # re-chunked for an HTTP/1.1 client
RAW = 3  # HTTP/1.0 client: raw bytes, connection closed at the end

_RESPONSE_KINDS = h.RESPONSE_KINDS
_CONTENT_LENGTH = h.CONTENT_LENGTH
_TRANSFER_ENCODING = h.TRANSFER_ENCODING
_CONNECTION = h.CONNECTION
_UPGRADE = h.UPGRADE
_REQUEST_ID = h.REQUEST_ID
_MAX_FIELDS = 4 * 256  # parts of forwarded response fields (256 fields)

_STATUS_LINES: dict[int, tuple[bytes, bytes]] = {}


def _status(code: int, reason: bytes) -> bytes:
    # The app's reason phrase is kept (RFC 9112 §4); the standard ones come from a cache.
    cached = _STATUS_LINES.get(code)
    if cached is None:
        line = status_line(code)
        cached = (line[13:-2], line)
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[code] = cached
    if cached[0] == reason:
        return cached[1]
    return b"HTTP/1.1 %d %s\r\n" % (code, reason)


class UpstreamProtocolError(Exception):
    """The instance sent something that is not a valid response to our request."""


class UpstreamConnection(asyncio.Protocol):
    """One connection to an instance; bound to one exchange at a time, pooled in between."""

    __slots__ = (
        "client",
        "done",
        "ex",
        "framing",
        "head_sent",
        "idle_since",
        "in_head",
        "informational",
        "instance",
        "is_open",
        "keep",
        "length",
        "out",
        "parser",
        "parser_dirty",
        "parts",
        "read_paused",
        "reason",
        "received",
        "request_id",
        "reused",
        "te",
        "tokens",
        "transport",
        "tunnel",
        "upgrade",
    )

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.client: ClientConnection | None = None
        self.ex: Exchange | None = None
        self.is_open = False
        self.idle_since = 0.0
        self.reused = False  # served a request before (a stale keep-alive may be closed)
        self.tunnel = False
        self.read_paused = False
        self.parser_dirty = False
        self.out: list[bytes] = []
        self.in_head = False
        self.parts: list[bytes] = []
        self.length: bytes | None = None
        self.te: bytes | None = None
        self.tokens: set[bytes] | None = None
        self.upgrade: bytes | None = None
        self.reason = b""
        self.request_id = False  # the response carries its own X-Request-Id
        self._reset()

    def _reset(self) -> None:
        # What on_message_begin does not reset itself.
        self.received = False  # any response byte arrived
        self.head_sent = False
        self.done = False
        self.keep = True
        self.framing = NO_BODY
        self.informational = False

    # -- binding to exchanges ------------------------------------------------------------

    def bind(self, client: ClientConnection, ex: Exchange) -> None:
        """Take ``ex`` (its head is written by the caller)."""
        if self.parser_dirty:
            # The previous response was to HEAD: httptools still expects its body.
            self.parser = HttpResponseParser(self)
            self.parser_dirty = False
        self.client = client
        self.ex = ex
        self._reset()

    def release(self) -> None:
        """Detach from the exchange; the caller pools or closes the connection."""
        self.client = None
        self.ex = None
        self.reused = True
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.client = None
        self.ex = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.client = None
        self.ex = None
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; the interface is the same.
        self.transport = cast(asyncio.Transport, transport)
        self.is_open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        client = self.client
        if client is None:
            self.instance.forget(self)
            return
        if self.tunnel:
            client.tunnel_closed()
            return
        if self.head_sent and not self.done and self.length is None and self.te is None:
            # RFC 9112 §6.3 rule 8: without framing the body ends when the connection does.
            if self.framing == CHUNKED:
                client.write(b"0\r\n\r\n")
            self.done = True
            self.keep = False
            client.response_done(self)
            return
        client.upstream_failed(self, "reset")

    def eof_received(self) -> bool | None:
        self.is_open = False  # never handed out again; connection_lost follows
        return None

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            # An idle connection has nothing to say (RFC 9112 §9.3: responses only).
            self.close()
            return
        if self.tunnel:
            client.touched = True
            client.write(data)
            return
        self.received = True
        client.touched = True  # a streaming response is alive (see the STREAM deadline)
        out = self.out = []
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            if out:
                client.write(b"".join(out))
            client.start_tunnel(self, data[exc.args[0] :])
            return
        except HttpParserError:
            client.upstream_failed(self, "protocol")
            return
        if out:
            payload = out[0] if len(out) == 1 else b"".join(out)
            client.write(payload)
        if self.done:
            client.response_done(self)

    def pause_writing(self) -> None:
        # The instance reads the request body slower than the client sends it.
        if self.client is not None:
            self.client.block_reading(1)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.unblock_reading(1)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done or self.ex is None:
            raise UpstreamProtocolError("a response nobody asked for")
        self.in_head = True
        self.parts = []
        self.length = None
        self.te = None
        self.tokens = None
        self.upgrade = None
        self.reason = b""
        self.request_id = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # chunked trailer fields are dropped (RFC 9112 §7.1.2)
        kind = _RESPONSE_KINDS.get(name.lower())
        if kind is None:
            parts = self.parts
            parts += (name, b": ", value, b"\r\n")
            if len(parts) > _MAX_FIELDS:
                raise UpstreamProtocolError("too many response header fields")
        elif kind == _CONTENT_LENGTH:
            self.length = value
        elif kind == _TRANSFER_ENCODING:
            self.te = value
        elif kind == _CONNECTION:
            tokens = connection_tokens(value)
            self.tokens = tokens if self.tokens is None else self.tokens | tokens
        elif kind == _UPGRADE:
            self.upgrade = value
        elif kind == _REQUEST_ID:
            self.request_id = True
            self.parts += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        self.in_head = False
        ex = self.ex
        client = self.client
        assert ex is not None and client is not None
        parser = self.parser
        code: int = parser.get_status_code()
        parts = self.parts
        tokens = self.tokens
        if tokens is not None:
            named = tokens - CONNECTION_OPTIONS
            if named:
                parts = without_fields(parts, named)
        out = self.out
        if code < 200:
            if code != 101:
                # RFC 9110 §15.2: 1xx are hop-by-hop; 100 Continue is the gateway's to send.
                self.informational = True
                return
            if ex.upgrade is None or self.upgrade is None:
                raise UpstreamProtocolError("101 to a request that asked for no upgrade")
            out.append(_status(code, self.reason))
            out += parts
            out += (b"Connection: upgrade\r\nUpgrade: ", self.upgrade, b"\r\n\r\n")
            ex.status = ex.upstream_status = 101
            self.head_sent = True
            return
        length = self.length
        if ex.is_head or code in (204, 304):
            self.framing = NO_BODY
            if length is not None and code != 204:
                parts += (b"Content-Length: ", length.strip(b" \t"), b"\r\n")
        elif length is not None:
            self.framing = LENGTH
            parts += (b"Content-Length: ", length.strip(b" \t"), b"\r\n")
        elif ex.http11:
            self.framing = CHUNKED
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            self.framing = RAW
            ex.close_after = True
        if not (ex.request_done and ex.keep_alive) or ex.upgrade is not None or client.stopping:
            ex.close_after = True
        if not self.request_id and ex.request_id is not None:
            # Every answer names its request, so a client can quote it (unless the app did).
            parts += (b"X-Request-Id: ", ex.request_id, b"\r\n")
        if ex.close_after:
            parts.append(b"Connection: close\r\n")
        elif not ex.http11:
            parts.append(b"Connection: keep-alive\r\n")
        self.keep = parser.should_keep_alive()
        out.append(_status(code, self.reason))
        out += parts
        out.append(b"\r\n")
        ex.status = ex.upstream_status = code
        self.head_sent = True
        client.response_started()
        if ex.is_head:
            # httptools does not know the request was HEAD; the head is the whole response.
            self.done = True
            self.parser_dirty = True

    def on_body(self, body: bytes) -> None:
        framing = self.framing
        if framing == CHUNKED:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        elif framing == NO_BODY or self.done:
            raise UpstreamProtocolError("a body where none may be")
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        if self.done:
            return  # HEAD response whose framing httptools could see the end of
        if self.framing == CHUNKED:
            self.out.append(b"0\r\n\r\n")
        self.done = True
