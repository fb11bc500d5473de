"""Fallback load generator for benchmarks/gateway.py when ``wrk`` is not installed.

Keep-alive HTTP/1.1 GETs over N connections for D seconds, one request in flight per
connection (as wrk does); prints one JSON object: requests, seconds, errors, p50/p99 (s).

Usage: python benchmarks/_load.py URL CONNECTIONS SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import uvloop


async def _worker(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float]
) -> int:
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 2"):
                errors += 1
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()
    return errors


async def main(url: str, connections: int, seconds: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    errors = await asyncio.gather(
        *(_worker(host, port, request, deadline, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    count = len(latencies)
    print(
        json.dumps(
            {
                "requests": count,
                "seconds": elapsed,
                "errors": sum(errors),
                "p50": latencies[count // 2] if count else 0.0,
                "p99": latencies[min(count - 1, int(count * 0.99))] if count else 0.0,
            }
        )
    )


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
