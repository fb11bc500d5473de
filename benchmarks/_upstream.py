"""A lean upstream for the gateway benchmark: uvloop, one raw protocol, fixed answers.

``/small`` answers about 100 bytes, ``/large`` 16 KiB; keep-alive and pipelining work. It
does the least an HTTP server can, so that the proxy in front of it is what gets measured.

Usage: python benchmarks/_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

# A 100-byte JSON body.
SMALL_BODY = (
    b'{"app":"bench","message":"hello from the benchmark upstream","padding":"' + b"x" * 26 + b'"}'
)
LARGE_BODY = b"x" * (16 * 1024)


def _response(body: bytes, media: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + media
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


SMALL = _response(SMALL_BODY, b"application/json")
LARGE = _response(LARGE_BODY, b"application/octet-stream")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class Fixed(asyncio.Protocol):
    """Answers every GET head in the buffer; bodies are not expected."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out = []
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end == -1:
                break
            line_end = buffer.find(b" ", buffer.find(b" ", start) + 1)
            target = buffer[buffer.find(b" ", start) + 1 : line_end]
            if target.endswith(b"/small"):
                out.append(SMALL)
            elif target.endswith(b"/large"):
                out.append(LARGE)
            else:
                out.append(NOT_FOUND)
            start = end + 4
        self.buffer = buffer[start:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Fixed, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
