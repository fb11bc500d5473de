"""Health probes: one HTTP GET (or a TCP connect) on an instance's loopback port.

Raw asyncio streams instead of an HTTP client: a probe needs only the status line, and a
supervisor with many instances runs one probe per instance per interval. A 2xx or 3xx status
is healthy, as for Kubernetes' httpGet probes.
"""

from __future__ import annotations

import asyncio
import contextlib

from courtyard.core import Clock
from courtyard.runtime._deadlines import within

_USER_AGENT = "courtyard-health/1"


async def probe(
    host: str, port: int, path: str | None, *, timeout: float, clock: Clock
) -> str | None:
    """Check one instance: None when healthy, else a short reason ("HTTP 500", ...).

    With ``path`` None the check is only that the port accepts a TCP connection.
    """
    try:
        return await within(clock, timeout, _check(host, port, path))
    except TimeoutError:
        return f"no answer within {timeout:g} s"


async def _check(host: str, port: int, path: str | None) -> str | None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return f"cannot connect to port {port}: {exc.strerror or exc}"
    try:
        if path is None:
            return None
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {_USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        status_line = await reader.readline()
        return _judge(status_line, path)
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return f"GET {path} failed: {exc}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _judge(status_line: bytes, path: str) -> str | None:
    # RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    if not status_line:
        return f"GET {path}: connection closed without a response"
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return f"GET {path}: not an HTTP response"
    status = int(parts[1])
    if 200 <= status < 400:
        return None
    return f"GET {path} answered HTTP {status}"
