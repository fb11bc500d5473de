"""What a client connection's single deadline means, and what happens when it passes: the
worker's sweep calls ``on_deadline``, and ``shutdown`` when the worker stops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from courtyard.gateway._responses import error_response

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from courtyard.gateway._config import GatewayConfig
    from courtyard.gateway._exchange import Exchange
    from courtyard.gateway._state import GatewayState
    from courtyard.gateway._upstream import UpstreamConnection

# What the connection's single deadline means now (checked by the worker's sweep).
IDLE = 0  # between requests: keep-alive timeout, then close quietly
HEAD = 1  # a request head is arriving: header timeout, then 408
BODY = 2  # the request body is streaming upstream: body timeout since the last byte
WAIT = 3  # waiting for the response head: the route's response timeout, then 504
STREAM = 4  # the response body is streaming: upstream idle timeout since the last byte
TUNNEL = 5  # upgraded: tunnel idle timeout since the last byte either way
CONNECTING = 6  # the connect task enforces the connect timeout itself
LINGER = 7  # answered and half-closed: wait for the client's FIN, then close

LINGER_SECONDS = 2.0

_INFINITY = float("inf")


class _Client(Protocol):
    """What the deadline logic uses of its client connection."""

    state: GatewayState
    config: GatewayConfig
    transport: asyncio.Transport | None
    current: Exchange | None
    active: Exchange | None
    queue: deque[Exchange]
    tunnel: UpstreamConnection | None
    deadline: float
    kind: int
    touched: bool
    in_head: bool
    broken: bool
    is_closed: bool

    def _answer_error(
        self,
        ex: Exchange,
        status: int,
        detail: str,
        *,
        close: bool = False,
        extra: bytes = b"",
    ) -> None: ...

    def _close(self) -> None: ...

    def _abort(self, ex: Exchange) -> None: ...

    def _count_unrouted(self, status: int, seconds: float | None) -> None: ...


class DeadlineMixin:
    """The deadlines and shutdown of ``ClientConnection``, mixed into it."""

    __slots__ = ()

    # What the methods below assign, typed as on ClientConnection (mypy would otherwise
    # infer these attributes from the assignments).
    current: Exchange | None
    tunnel: UpstreamConnection | None
    deadline: float
    touched: bool
    in_head: bool
    broken: bool

    def on_deadline(self: _Client, now: float) -> None:
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
            if self.state.config.telemetry:
                self._count_unrouted(408, None)
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

    def shutdown(self: _Client) -> None:
        """The worker stops: close now when idle, else after the current answer."""
        if self.is_closed or self.transport is None:
            return
        if self.active is None and not self.queue and not self.in_head:
            self.broken = True
            self.transport.close()
