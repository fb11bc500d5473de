"""Health probes against real loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from courtyard.core import FakeClock, SystemClock
from courtyard.runtime._health import probe

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answering(status_line: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(request)
        writer.write(status_line + b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return handle


@pytest.mark.parametrize(
    ("status_line", "verdict"),
    [
        (b"HTTP/1.1 200 OK\r\n", None),
        (b"HTTP/1.0 204 No Content\r\n", None),
        (b"HTTP/1.1 302 Found\r\n", None),
        (b"HTTP/1.1 404 Not Found\r\n", "GET /healthz answered HTTP 404"),
        (b"HTTP/1.1 503 Service Unavailable\r\n", "GET /healthz answered HTTP 503"),
        (b"SSH-2.0-OpenSSH\r\n", "GET /healthz: not an HTTP response"),
    ],
)
async def test_http_status_decides(
    serve: Callable[[Handler], Awaitable[int]], status_line: bytes, verdict: str | None
) -> None:
    seen: list[bytes] = []
    port = await serve(answering(status_line, seen))
    assert await probe("127.0.0.1", port, "/healthz", timeout=2.0, clock=SystemClock()) == verdict
    assert seen[0].startswith(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_closed_without_answer(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # closing with unread data would reset instead
        writer.close()

    port = await serve(hang_up)
    verdict = await probe("127.0.0.1", port, "/healthz", timeout=2.0, clock=SystemClock())
    assert verdict == "GET /healthz: connection closed without a response"


async def test_nothing_listening() -> None:
    server = await asyncio.start_server(answering(b""), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    verdict = await probe("127.0.0.1", port, "/healthz", timeout=2.0, clock=SystemClock())
    assert verdict is not None and verdict.startswith(f"cannot connect to port {port}")
    assert await probe("127.0.0.1", port, None, timeout=2.0, clock=SystemClock()) == verdict


async def test_tcp_only_needs_a_listener(serve: Callable[[Handler], Awaitable[int]]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    port = await serve(silent)
    assert await probe("127.0.0.1", port, None, timeout=2.0, clock=SystemClock()) is None


async def test_a_silent_server_times_out_on_the_injected_clock(
    serve: Callable[[Handler], Awaitable[int]],
) -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    port = await serve(silent)
    clock = FakeClock()
    checking = asyncio.create_task(probe("127.0.0.1", port, "/healthz", timeout=2.0, clock=clock))
    while clock.sleepers == 0:
        await asyncio.sleep(0)
    await clock.advance(2.0)
    assert await checking == "no answer within 2 s"
    release.set()
