"""The upstream side of a client connection: picking an instance, connecting, forwarding the
request with backpressure on the client, and the callbacks of the upstream connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

from courtyard.gateway._deadlines import BODY, CONNECTING, STREAM, TUNNEL, WAIT
from courtyard.gateway._upstream import UpstreamConnection

if TYPE_CHECKING:
    from courtyard.gateway._config import GatewayConfig
    from courtyard.gateway._exchange import Exchange
    from courtyard.gateway._pool import Instance
    from courtyard.gateway._proxy import ClientConnection
    from courtyard.gateway._state import GatewayState

# Reasons reading from the client is paused (a bit each).
BLOCK_UPSTREAM = 1  # the instance's socket buffer is full
BLOCK_BUFFER = 2  # too much request body held while connecting or queued
BLOCK_QUEUE = 4  # too many pipelined requests

_INFINITY = float("inf")


class _Client(Protocol):
    """What the upstream side uses of its client connection."""

    state: GatewayState
    config: GatewayConfig
    transport: asyncio.Transport | None
    active: Exchange | None
    tunnel: UpstreamConnection | None
    upgrade_buffer: list[bytes] | None
    deadline: float
    kind: int
    read_block: int
    write_paused: bool
    is_closed: bool

    def write(self, data: bytes) -> None: ...

    def block_reading(self, reason: int) -> None: ...

    def unblock_reading(self, reason: int) -> None: ...

    def _dispatch(self, ex: Exchange) -> None: ...

    async def _connect(self, ex: Exchange, instance: Instance) -> None: ...

    def _unpick(self, ex: Exchange) -> None: ...

    def _attach(self, ex: Exchange, conn: UpstreamConnection) -> None: ...

    def _answer_error(
        self,
        ex: Exchange,
        status: int,
        detail: str,
        *,
        close: bool = False,
        extra: bytes = b"",
    ) -> None: ...

    def _abort(self, ex: Exchange) -> None: ...

    def _finish(self, ex: Exchange) -> None: ...


class DispatchMixin:
    """The upstream side of ``ClientConnection``, mixed into it."""

    __slots__ = ()

    # What the methods below assign, typed as on ClientConnection (mypy would otherwise
    # infer these attributes from the assignments).
    tunnel: UpstreamConnection | None
    upgrade_buffer: list[bytes] | None
    deadline: float
    kind: int
    read_block: int

    # -- flow control --------------------------------------------------------------------

    def block_reading(self: _Client, reason: int) -> None:
        if not self.read_block and self.transport is not None and not self.is_closed:
            self.transport.pause_reading()
        self.read_block |= reason

    def unblock_reading(self: _Client, reason: int) -> None:
        if self.read_block & reason:
            self.read_block &= ~reason
            if not self.read_block and self.transport is not None and not self.is_closed:
                self.transport.resume_reading()

    # -- sending the request upstream ----------------------------------------------------

    def _dispatch(self: _Client, ex: Exchange) -> None:
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

    async def _connect(self: _Client, ex: Exchange, instance: Instance) -> None:
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

    def _unpick(self: _Client, ex: Exchange) -> None:
        instance = ex.instance
        if instance is not None:
            ex.instance = None
            instance.outstanding -= 1
            if instance.removed and instance.outstanding == 0:
                self.state.settled(instance)

    def _attach(self: _Client, ex: Exchange, conn: UpstreamConnection) -> None:
        ex.up = conn
        conn.bind(cast("ClientConnection", self), ex)  # the only class this is mixed into
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

    def _flush_body(self: _Client, ex: Exchange) -> None:
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

    def response_started(self: _Client) -> None:
        ex = self.active
        assert ex is not None
        ex.started = True
        if ex.request_done:
            self.kind = STREAM
            self.deadline = self.state.now + self.config.upstream_idle_timeout

    def response_done(self: _Client, conn: UpstreamConnection) -> None:
        ex = self.active
        assert ex is not None
        ex.up = None
        instance = conn.instance
        keep = conn.keep and ex.request_done and conn.is_open
        conn.release()
        if not (keep and instance.put_idle(conn, self.state.now)):
            conn.close()
        self._finish(ex)

    def upstream_failed(self: _Client, conn: UpstreamConnection, kind: str) -> None:
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

    def start_tunnel(self: _Client, conn: UpstreamConnection, rest: bytes) -> None:
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

    def tunnel_closed(self: _Client) -> None:
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
