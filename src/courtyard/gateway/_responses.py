"""Answers the gateway writes itself: RFC 9457 problem documents (or HTML for browsers),
redirects and the health endpoints, as ready-to-send bytes."""

from __future__ import annotations

import html
import json
from http import HTTPStatus

from courtyard.core import problem

PROBLEM_TYPE = b"application/problem+json"

# Titles of the problems the gateway answers; the type URI slug derives from the title.
TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Access denied",
    404: "No route",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Request body too large",
    414: "Request target too long",
    417: "Expectation failed",
    431: "Request header fields too large",
    500: "Gateway failure",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    505: "HTTP version not supported",
}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (RFC 9112 §4); always 1.1, the gateway's version."""
    try:
        reason = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        reason = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def error_response(
    status: int,
    detail: str,
    request_id: bytes,
    *,
    html_page: bool,
    close: bool,
    date: bytes,
    head_only: bool = False,
    extra: bytes = b"",
) -> bytes:
    """A complete error response: problem JSON, or a small page when the client wants HTML.

    ``extra`` holds additional ready header lines (``Retry-After``, ``Allow``).
    """
    title = TITLES.get(status) or HTTPStatus(status).phrase
    rid = request_id.decode("ascii")
    if html_page:
        body = _page(status, title, detail, rid)
        media = b"text/html; charset=utf-8"
    else:
        doc = problem(status, title, detail, request_id=rid)
        body = json.dumps(doc, separators=(",", ":")).encode()
        media = PROBLEM_TYPE
    head = b"".join(
        (
            status_line(status),
            date,
            b"Content-Type: ",
            media,
            b"\r\nContent-Length: %d\r\nX-Request-Id: " % len(body),
            request_id,
            b"\r\nCache-Control: no-store\r\n",
            extra,
            b"Connection: close\r\n\r\n" if close else b"\r\n",
        )
    )
    return head if head_only else head + body


def _page(status: int, title: str, detail: str, request_id: str) -> bytes:
    text = (
        "<!doctype html>\n<html lang=en><meta charset=utf-8>"
        f"<title>{status} {html.escape(title)}</title>\n"
        f"<h1>{status} {html.escape(title)}</h1>\n<p>{html.escape(detail)}</p>\n"
        f"<p><small>request id {html.escape(request_id)}</small></p>\n"
    )
    return text.encode()


def redirect_response(location: bytes, request_id: bytes, *, close: bool, date: bytes) -> bytes:
    """308 Permanent Redirect (RFC 9110 §15.4.9): same method and body at ``location``."""
    return b"".join(
        (
            status_line(308),
            date,
            b"Location: ",
            location,
            b"\r\nContent-Length: 0\r\nX-Request-Id: ",
            request_id,
            b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
        )
    )


def login_response(location: bytes, request_id: bytes, *, close: bool, date: bytes) -> bytes:
    """302 Found (RFC 9110 §15.4.3) to the sign-in page; never cached, since the same URL
    answers differently once the browser has a session."""
    return b"".join(
        (
            status_line(302),
            date,
            b"Location: ",
            location,
            b"\r\nContent-Length: 0\r\nCache-Control: no-store\r\nX-Request-Id: ",
            request_id,
            b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
        )
    )


def json_response(
    status: int, body: bytes, request_id: bytes, *, close: bool, date: bytes, head_only: bool
) -> bytes:
    """A small JSON answer (health endpoints)."""
    head = b"".join(
        (
            status_line(status),
            date,
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
            b"Cache-Control: no-store\r\nX-Request-Id: ",
            request_id,
            b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
        )
    )
    return head if head_only else head + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
