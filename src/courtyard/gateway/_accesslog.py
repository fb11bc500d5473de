"""One JSON line per request, kept in memory and written by the worker's sweep.

The logging module costs microseconds per call; here a request appends one tuple of values
that are JSON-safe already (normalized paths, validated ids), lines are formatted in small
batches and each sweep writes them with one system call.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import BinaryIO

# wall clock, request id, method, path, status, bytes sent, seconds, app, instance, client,
# upstream status or error, trace id (b"" when the request was answered before one was chosen)
_Entry = tuple[float, bytes, bytes, bytes, int, int, float, bytes, bytes, bytes, bytes, bytes]

_BATCH = 256

_LINE = (
    b'{"time":"%s.%03dZ","request_id":"%s","trace_id":%s,"method":"%s","path":"%s","status":%d,"bytes":%d,'
    b'"duration_ms":%.3f,"app":"%s","instance":%s,"client":"%s","upstream":"%s"}\n'
)


class AccessLog:
    """Buffered JSON-lines access log; ``flush`` is called by the worker's sweep and on close."""

    __slots__ = ("_chunks", "_entries", "_owned", "_second", "_stamp", "_stream")

    def __init__(self, stream: BinaryIO, *, owned: bool = False) -> None:
        self._stream = stream
        self._owned = owned
        self._entries: list[_Entry] = []
        self._chunks: list[bytes] = []  # formatted lines not written yet
        self._second = -1
        self._stamp = b""

    @classmethod
    def open(cls, target: str) -> AccessLog:
        """``-`` for standard output, else a file opened for appending."""
        if target == "-":
            return cls(sys.stdout.buffer)
        return cls(open(target, "ab"), owned=True)

    def record(
        self,
        wall: float,
        request_id: bytes,
        method: bytes,
        path: bytes,
        status: int,
        sent: int,
        seconds: float,
        app: bytes,
        instance: bytes,
        client: bytes,
        upstream: bytes,
        trace_id: bytes = b"",
    ) -> None:
        """Queue one line. Every value must be JSON-safe already except ``path``, which is
        escaped only when it holds a quote, backslash or control byte (normalized paths never
        do); ``instance`` is a JSON literal (quoted id or ``null``); ``trace_id`` is the W3C
        trace id sent upstream (hex), b"" when there was none (logged as ``null``).

        Lines are formatted 256 at a time (a batch formats faster than one line per request,
        and a small one keeps the pause short) and written by ``flush``.
        """
        entries = self._entries
        entries.append(
            (
                wall,
                request_id,
                method,
                path,
                status,
                sent,
                seconds,
                app,
                instance,
                client,
                upstream,
                trace_id,
            )
        )
        if len(entries) >= _BATCH:
            self._format()

    def flush(self) -> None:
        """Write what is queued (one write call)."""
        if self._entries:
            self._format()
        if not self._chunks:
            return
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._stream.write(data)
        self._stream.flush()

    def _format(self) -> None:
        entries = self._entries
        self._entries = []
        lines = []
        for entry in entries:
            wall = entry[0]
            second = int(wall)
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            path = entry[3]
            if _UNSAFE(path) is not None:
                path = json.dumps(path.decode("latin-1"))[1:-1].encode()
            trace_id = entry[11]
            lines.append(
                _LINE
                % (
                    self._stamp,
                    int((wall - second) * 1000),
                    entry[1],
                    b'"%s"' % trace_id if trace_id else b"null",
                    entry[2],
                    path,
                    entry[4],
                    entry[5],
                    entry[6] * 1000,
                    entry[7],
                    entry[8],
                    entry[9],
                    entry[10],
                )
            )
        self._chunks.append(b"".join(lines))

    def close(self) -> None:
        self.flush()
        if self._owned:
            self._stream.close()


_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]').search


def quote(value: str) -> bytes:
    """JSON string literal of ``value`` (used once per instance, not per request)."""
    return json.dumps(value).encode()
