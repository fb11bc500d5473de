"""The in-process gateway: listening sockets (public, plain or TLS, and the loopback mesh
listener), the periodic sweep, snapshots and shutdown.

A worker process runs one; tests run one on 127.0.0.1:0 next to an in-process upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

from courtyard.contracts import GatewaySnapshot, SpanRecord, WorkerMetrics
from courtyard.core import Clock, SystemClock
from courtyard.gateway._access import AccessGate
from courtyard.gateway._accesslog import AccessLog
from courtyard.gateway._config import GatewayConfig, GatewayError
from courtyard.gateway._mesh_proxy import MeshConnection
from courtyard.gateway._proxy import ClientConnection
from courtyard.gateway._snapshots import check_snapshot
from courtyard.gateway._state import GatewayState
from courtyard.gateway._tls import server_context


class Gateway:
    """An HTTP/1.1 reverse proxy routing by the snapshot it was last given.

    ``on_drained(version)`` is called once every request that was in flight to an instance
    removed by snapshot ``version`` (or an earlier one) has finished, or after the drain
    timeout.
    """

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        clock: Clock | None = None,
        on_drained: Callable[[int], None] | None = None,
        access_log: AccessLog | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config or GatewayConfig()
        self._clock = clock or SystemClock()
        self._on_drained = on_drained
        self._access_log = access_log
        self._state: GatewayState | None = None
        self._servers: list[asyncio.Server] = []
        self._mesh_servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._pending: GatewaySnapshot | None = None
        # Given, or built from config.tls_cert/tls_key at the first start(); None = plain HTTP.
        self._ssl = ssl_context

    # -- lifecycle -----------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (or the given bound socket); returns the bound address.

        With a TLS certificate configured the socket serves TLS only; a certificate or key
        that cannot be loaded raises TlsInvalid before anything listens.
        """
        if self._ssl is None and self.config.tls_cert and self.config.tls_key:
            self._ssl = server_context(self.config.tls_cert, self.config.tls_key)
        state = self._ensure_state()
        server = await self._listen(lambda: ClientConnection(state), host, port, sock, self._ssl)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def start_mesh(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Serve the mesh listener on ``host:port`` (or the given bound socket): plain HTTP,
        the same worker state, ``/<service>/<path>`` calls between workloads (docs/gateway.md,
        "Mesh listener"). Returns the bound address."""
        state = self._ensure_state()
        server = await self._listen(lambda: MeshConnection(state), host, port, sock, None)
        self._mesh_servers.append(server)
        bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    def _ensure_state(self) -> GatewayState:
        if self._state is None:
            log = self._access_log
            if log is None and self.config.access_log is not None:
                log = AccessLog.open(self.config.access_log)
            self._state = GatewayState(
                config=self.config,
                clock=self._clock,
                loop=asyncio.get_running_loop(),
                access_log=log,
                on_drained=self._on_drained,
            )
            if self._pending is not None:
                self._state.apply(self._pending)
                self._pending = None
            self._sweeper = self._state.loop.create_task(self._sweep())
        return self._state

    async def _listen(
        self,
        factory: Callable[[], ClientConnection],
        host: str,
        port: int,
        sock: socket.socket | None,
        tls: ssl.SSLContext | None,
    ) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        # The handshake gets the head's timeout rather than asyncio's 60 s: a client stalling
        # in the handshake holds a connection no longer than one stalling in its head.
        handshake = self.config.header_timeout if tls is not None else None
        try:
            if sock is not None:
                return await loop.create_server(
                    factory,
                    sock=sock,
                    backlog=self.config.backlog,
                    ssl=tls,
                    ssl_handshake_timeout=handshake,
                )
            return await loop.create_server(
                factory,
                host,
                port,
                backlog=self.config.backlog,
                ssl=tls,
                ssl_handshake_timeout=handshake,
            )
        except OSError as exc:
            raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc

    @property
    def access(self) -> AccessGate:
        """The access gate of the started gateway: credentials go in, usage comes out."""
        if self._state is None:
            raise GatewayError("the gateway has not started")
        return self._state.access

    @property
    def is_tls(self) -> bool:
        """True when the listening sockets serve TLS."""
        return self._ssl is not None or self.config.is_tls

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every public address listened on."""
        return _bound(self._servers)

    @property
    def mesh_addresses(self) -> list[tuple[str, int]]:
        """Every mesh listener address."""
        return _bound(self._mesh_servers)

    async def _sweep(self) -> None:
        state = self._state
        assert state is not None
        interval = self.config.sweep_interval
        while True:
            await self._clock.sleep(interval)
            state.sweep()

    def stop_accepting(self) -> None:
        """Close the listening sockets; connections already open carry on."""
        for server in (*self._servers, *self._mesh_servers):
            server.close()

    async def aclose(self, grace: float | None = None) -> None:
        """Stop: no new connections, idle ones closed, in-flight answers get ``grace`` s."""
        state = self._state
        self.stop_accepting()
        if state is None:
            return
        state.stopping = True
        for conn in list(state.connections):
            conn.shutdown()
        limit = self.config.shutdown_grace if grace is None else grace
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while state.connections:
                    await asyncio.sleep(0.02)
                    state.tick()
                    for conn in list(state.connections):
                        conn.shutdown()
        for conn in list(state.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for instance in state.instances.values():
            instance.close_idle()
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.gather(*state.tasks, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for server in (*self._servers, *self._mesh_servers):
            with contextlib.suppress(Exception):
                await server.wait_closed()
        # Let transports deliver connection_lost before the loop goes away.
        await asyncio.sleep(0)
        if state.access_log is not None:
            state.access_log.close()

    # -- configuration -------------------------------------------------------------------

    def apply(self, snapshot: GatewaySnapshot) -> None:
        """Route by ``snapshot`` from now on (requests already routed keep their instance)."""
        check_snapshot(snapshot)
        if self._state is None:
            self._pending = snapshot
            return
        self._state.apply(snapshot)

    @property
    def version(self) -> int:
        """Version of the snapshot in use (0 before the first)."""
        if self._state is None:
            return self._pending["version"] if self._pending is not None else 0
        return self._state.table.version

    @property
    def is_ready(self) -> bool:
        """True once a snapshot with version >= 1 is applied (what /readyz answers)."""
        return self.version >= 1

    @property
    def drained_version(self) -> int:
        """The highest snapshot version whose removed instances have drained."""
        return self._state.drained_version if self._state is not None else 0

    def metrics(self) -> WorkerMetrics:
        """This worker's counters in the control channel's shape."""
        if self._state is None:
            return {"requests": {}, "latency": {}, "upstream_errors": {}, "in_flight": 0}
        return self._state.metrics.snapshot()

    def take_spans(self) -> tuple[list[SpanRecord], int]:
        """The spans finished since the last call, and how many were dropped."""
        if self._state is None:
            return [], 0
        return self._state.metrics.take_spans()

    def take_span_rows(self) -> tuple[bytes, bytes, int, int]:
        """:meth:`take_spans` in the control channel's compact form: (kinds, rows) as JSON
        arrays, the number of rows, and how many spans were dropped."""
        if self._state is None:
            return b"[]", b"[]", 0, 0
        return self._state.metrics.take_span_rows()

    def flush_access_log(self) -> None:
        """Write queued access-log lines now (the sweep does it every tick)."""
        if self._state is not None and self._state.access_log is not None:
            self._state.access_log.flush()


def _bound(servers: list[asyncio.Server]) -> list[tuple[str, int]]:
    found = []
    for server in servers:
        for sock in server.sockets:
            name = sock.getsockname()
            found.append((str(name[0]), int(name[1])))
    return found
