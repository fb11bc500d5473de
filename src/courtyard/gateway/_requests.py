"""Rules over a parsed request head, and the head the gateway sends upstream: pure functions.

httptools (llhttp) parses strictly; these rules refuse what it lets through but a proxy must
not forward (RFC 9112 §6.3 ambiguous framing, versions other than 1.0/1.1, no Host).
"""

from __future__ import annotations

from courtyard.gateway._config import GatewayError
from courtyard.gateway._exchange import Exchange
from courtyard.gateway._headers import (
    CONNECTION_OPTIONS,
    is_chunked,
    parse_traceparent,
    without_fields,
)
from courtyard.gateway._routing import RouteEntry

_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"


class RequestRejected(GatewayError):
    """A request the gateway answers with ``status`` and does not forward."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def check_head(ex: Exchange, version: str, method: bytes, upgrade: bool) -> None:
    """Validate a complete head (fields already taken into ``ex``) and settle its framing.

    ``upgrade`` is llhttp's verdict (Upgrade plus ``Connection: upgrade``, or CONNECT).
    Raises RequestRejected.
    """
    if version == "1.1":
        ex.http11 = True
    elif version == "1.0":
        ex.http11 = False
    else:
        raise RequestRejected(505, f"HTTP/{version} is not supported; use HTTP/1.1")
    ex.method = method
    ex.is_head = method == b"HEAD"
    if ex.http11 and ex.host is None:
        raise RequestRejected(400, "an HTTP/1.1 request needs a Host field")  # RFC 9112 §3.2
    if ex.te is not None:
        # RFC 9112 §6.1: chunked only, never with Content-Length, never in HTTP/1.0.
        if not is_chunked(ex.te):
            raise RequestRejected(400, "Transfer-Encoding other than chunked is not accepted")
        if ex.content_length != -1:
            raise RequestRejected(400, "the request has both Content-Length and Transfer-Encoding")
        if not ex.http11:
            raise RequestRejected(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        ex.chunked = True
    tokens = ex.tokens
    if tokens is not None:
        named = tokens - CONNECTION_OPTIONS
        if named:
            # RFC 9110 §7.6.1: fields the client names in Connection are for this hop only.
            ex.fwd = without_fields(ex.fwd, named)
            if b"x-request-id" in named:
                ex.request_id = None
            if b"traceparent" in named:
                ex.traceparent = None
            if b"cookie" in named:
                ex.cookie = None
            if b"authorization" in named:
                ex.authorization = None
    if method == b"CONNECT":
        raise RequestRejected(400, "CONNECT is not supported")
    if ex.upgrade is not None:
        if upgrade:
            if not ex.http11:
                raise RequestRejected(400, "Upgrade needs HTTP/1.1")
            if ex.chunked or ex.content_length > 0:
                raise RequestRejected(400, "an Upgrade request may not carry a body")
        else:
            ex.upgrade = None  # without "Connection: upgrade" it is hop-by-hop noise
    if not ex.http11:
        ex.expect = False  # RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0


def upstream_head(
    ex: Exchange,
    route: RouteEntry,
    target: bytes,
    host: bytes | None,
    forwarded_for: bytes,
    minted: bytes,
    span: bytes,
    sample: float = 1.0,
) -> bytes:
    """The request head for the instance: origin-form ``target``, the client's fields less
    hop-by-hop ones, Cookie, Authorization and Courtyard-Identity as the access gate chose
    them, the gateway's X-Forwarded-*, X-Request-Id and a traceparent whose parent is a new
    span (W3C Trace Context §3.2), and framing the gateway chose itself."""
    traceparent = ex.traceparent
    parsed = parse_traceparent(traceparent) if traceparent else None
    if parsed is None:
        # A new trace: sampled at ``sample`` (the random request id decides, no extra RNG).
        trace_id, parent = minted, b""
        flags = b"01" if sample >= 1.0 or int(minted[:4], 16) < sample * 65536 else b"00"
    else:
        trace_id, parent, flags = parsed
    # Trace Context §3.2.2.5: bit 0 of the flags is "sampled"; the gateway follows its caller.
    ex.trace = (trace_id, span, parent, flags[1] in b"13579bdf")
    host_line = host if host is not None else b""
    request_id = ex.request_id if ex.request_id is not None else minted
    parts = [
        ex.method,
        b" ",
        target,
        b" HTTP/1.1\r\nHost: ",
        host_line,
        b"\r\n",
        *ex.fwd,
        ex.cookie_line,
        ex.auth_line,
        ex.identity_line,
        forwarded_for,
        b"X-Forwarded-Host: ",
        host_line,
        b"\r\nX-Request-Id: ",
        request_id,
        b"\r\ntraceparent: 00-",
        trace_id,
        b"-",
        span,
        b"-",
        flags,
        b"\r\n",
        route.prefix_header,
    ]
    if ex.chunked:
        parts.append(_CHUNKED_LINE)
    elif ex.content_length >= 0:
        parts.append(b"Content-Length: %d\r\n" % ex.content_length)
    if ex.upgrade is not None:
        parts += (b"Connection: upgrade\r\nUpgrade: ", ex.upgrade, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
