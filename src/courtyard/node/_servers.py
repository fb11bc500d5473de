"""Small pieces the node runs beside the services: embedded uvicorn servers and port checks."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from courtyard.node._errors import NodeStartFailed


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the node (it owns the process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def embedded_server(app: Any, sock: socket.socket) -> EmbeddedServer:
    """A quiet uvicorn server for ``app`` on an already bound socket."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
    return EmbeddedServer(config)


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound, listening TCP socket (for the node's own internal servers)."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and accepted sockets inherit 0 otherwise; without it uvicorn's separate header and body
    # writes meet Nagle and the peer's delayed ACK, 40 ms per response (RFC 1122 §4.2.3.2).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise NodeStartFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """Check that ``host:port`` is free and hold it for the gateway workers.

    The check binds without SO_REUSEPORT, so it fails when anything at all holds the port
    (another node included). The returned socket is then bound *with* SO_REUSEPORT and never
    listens: it keeps the port for the workers, which join the same reuse group, and receives
    no connections itself (socket(7): only listening sockets take part in the distribution).
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
        port = probe.getsockname()[1]
    except OSError as exc:
        reason = "it is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise NodeStartFailed(f"cannot listen on {host}:{port}: {reason}") from None
    finally:
        probe.close()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError as exc:
        holder.close()
        raise NodeStartFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return holder
