"""The node's internal listeners: accepted connections must not wait on Nagle's algorithm."""

from __future__ import annotations

import asyncio
import socket

from courtyard.node._servers import bind_loopback


async def test_accepted_connections_have_tcp_nodelay() -> None:
    # asyncio turns TCP_NODELAY on only for sockets whose proto is IPPROTO_TCP; a response
    # written in two parts otherwise waits for the client's delayed ACK (40 ms on Linux).
    listener = bind_loopback()
    seen: list[int] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    port = listener.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    writer.close()
    server.close()
    await server.wait_closed()
    assert seen and seen[0] != 0
