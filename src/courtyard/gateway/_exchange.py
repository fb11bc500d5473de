"""One request/response exchange: what was parsed from the client, where it went, how it ended.

A plain slotted record. Pipelined requests each get one, so the next request's head and
body can be parsed while an earlier one is still being answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from courtyard.gateway._pool import Instance
    from courtyard.gateway._routing import RouteEntry
    from courtyard.gateway._upstream import UpstreamConnection


class Exchange:
    """Per-request state shared by the client and upstream protocols."""

    __slots__ = (
        "accept",
        "app",
        "auth_line",
        "authorization",
        "body",
        "body_pending",
        "body_seen",
        "caller",
        "chunked",
        "close_after",
        "content_length",
        "cookie",
        "cookie_line",
        "expect",
        "finished",
        "fresh",
        "fwd",
        "head",
        "head_done",
        "host",
        "http11",
        "identity_line",
        "instance",
        "is_head",
        "keep_alive",
        "method",
        "path",
        "request_done",
        "request_id",
        "retried",
        "route",
        "sent",
        "started",
        "status",
        "t0",
        "te",
        "tokens",
        "trace",
        "traced",
        "traceparent",
        "tried",
        "up",
        "upgrade",
        "upstream",
        "upstream_status",
        "url",
    )

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        # Parsed from the client.
        self.url = b""
        self.method = b""
        self.fwd: list[bytes] = []  # forwarded fields as (name, ": ", value, CRLF) groups
        self.host: bytes | None = None
        self.content_length = -1
        self.te: bytes | None = None
        self.chunked = False
        self.tokens: set[bytes] | None = None  # Connection options
        self.upgrade: bytes | None = None  # Upgrade value when the request is an upgrade
        self.expect = False  # Expect: 100-continue
        self.request_id: bytes | None = None
        self.traceparent: bytes | None = None
        self.accept: bytes | None = None
        self.cookie: bytes | None = None  # every Cookie field, joined with "; "
        self.authorization: bytes | None = None
        self.http11 = True
        self.keep_alive = True
        self.is_head = False
        self.head_done = False
        self.request_done = False
        # Request body on its way: framed chunks not yet written upstream.
        self.body: list[bytes] = []
        self.body_pending = 0
        self.body_seen = 0
        # Routing and upstream.
        self.path = b""
        self.app = "-"
        self.caller = ""  # mesh listener: the calling app ("-" until known); "" at the public port
        self.route: RouteEntry | None = None
        # (trace id, span id, parent span id or b"", sampled) once a traceparent is sent on.
        self.trace: tuple[bytes, bytes, bytes, bool] | None = None
        self.traced = True  # False for the apps' own span reports
        # Lines the access gate chose for the instance: Cookie and Authorization as they may
        # be forwarded, and the Courtyard-Identity assertion (each b"" or a whole line).
        self.cookie_line = b""
        self.auth_line = b""
        self.identity_line = b""
        self.head = b""  # the request head as sent upstream (kept for one retry)
        self.instance: Instance | None = None
        self.up: UpstreamConnection | None = None
        self.tried: list[Instance] | None = None
        self.fresh = False  # next connection must be a new one
        self.retried = False
        # Outcome.
        self.status = 0
        self.upstream = "-"  # upstream error kind, for the access log
        self.upstream_status = 0
        self.sent = 0
        self.started = False  # response head written to the client
        self.close_after = False
        self.finished = False

    @property
    def has_body(self) -> bool:
        """True when the request carries a body (chunked or a non-zero Content-Length)."""
        return self.chunked or self.content_length > 0
