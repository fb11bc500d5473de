"""The control channel: snapshots and credentials down to gateway workers; acknowledgements,
metrics, usage (sessions seen, requests refused) and spans up.

Newline-delimited JSON over loopback TCP. The first line a worker sends is a ``hello`` with
the node's shared token, compared in constant time (OWASP ASVS V2.9: no timing oracle on
secrets); any other first line closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from courtyard.contracts import (
    ControlMessage,
    CredentialsMessage,
    GatewaySnapshot,
    HelloMessage,
    MetricsMessage,
    SnapshotMessage,
    SpanRecord,
    SpansMessage,
    UsageMessage,
    WorkerMetrics,
    empty_snapshot,
)
from courtyard.core import CourtyardError
from courtyard.transport._spans import SPAN_ROWS, expand_span_rows

log = logging.getLogger("courtyard.transport")

_MAX_LINE = 64 * 1024 * 1024  # snapshots of very large fleets still fit


class TransportError(CourtyardError):
    """A control-channel failure."""


class ChannelClosed(TransportError):
    """The other side went away."""


def _encode(message: ControlMessage) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass
class _Worker:
    worker: int
    pid: int
    writer: asyncio.StreamWriter
    applied: int = 0
    drained: int = 0
    credentials: int = -1  # seq of the last credentials message the worker applied
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ControlServer:
    """The control plane's end: publishes snapshots and credentials, and waits for workers
    to apply snapshots.

    ``credentials_source()`` gives the whole credential table, sent to each worker right
    after its first snapshot; ``on_usage(message)`` receives the workers' usage reports.
    """

    def __init__(
        self,
        token: str,
        *,
        on_metrics: Callable[[int, WorkerMetrics], None] | None = None,
        on_worker_gone: Callable[[int], None] | None = None,
        on_usage: Callable[[UsageMessage], None] | None = None,
        on_spans: Callable[[SpansMessage], None] | None = None,
        credentials_source: Callable[[], CredentialsMessage] | None = None,
    ) -> None:
        self._token = token.encode()
        self._on_metrics = on_metrics
        self._on_worker_gone = on_worker_gone
        self._on_usage = on_usage
        self._on_spans = on_spans
        self._credentials_source = credentials_source
        self._credentials_seq = 0
        self._snapshot: GatewaySnapshot = empty_snapshot()
        self._workers: dict[int, _Worker] = {}
        self._server: asyncio.Server | None = None
        self._joined = asyncio.Event()

    @property
    def snapshot(self) -> GatewaySnapshot:
        """The latest published snapshot."""
        return self._snapshot

    @property
    def workers(self) -> list[int]:
        """Ids of the workers connected now."""
        return sorted(self._workers)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen; returns the bound address."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=_MAX_LINE)
        sock = self._server.sockets[0]
        bound = sock.getsockname()
        return str(bound[0]), int(bound[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for worker in list(self._workers.values()):
            worker.writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def wait_workers(self, count: int, timeout: float) -> None:
        """Wait until ``count`` workers have connected and applied the current snapshot."""
        async with asyncio.timeout(timeout):
            while True:
                ready = [
                    w for w in self._workers.values() if w.applied >= self._snapshot["version"]
                ]
                if len(ready) >= count:
                    return
                self._joined.clear()
                await self._joined.wait()

    async def publish(self, snapshot: GatewaySnapshot) -> None:
        """Send ``snapshot`` to every worker (and to every worker that connects later)."""
        self._snapshot = snapshot
        line = _encode(SnapshotMessage(type="snapshot", snapshot=snapshot))
        for worker in list(self._workers.values()):
            with contextlib.suppress(ConnectionError):
                worker.writer.write(line)

    def publish_credentials(self, message: CredentialsMessage) -> int:
        """Send a credentials change (or a full table) to every connected worker; returns the
        message's sequence number, for :meth:`wait_credentials`.

        A worker that connects later gets the full table from ``credentials_source``.
        """
        self._credentials_seq += 1
        message["seq"] = self._credentials_seq
        line = _encode(message)
        for worker in list(self._workers.values()):
            with contextlib.suppress(ConnectionError):
                worker.writer.write(line)
        return self._credentials_seq

    async def wait_credentials(self, seq: int, timeout: float) -> bool:
        """Wait until every connected worker has applied credentials message ``seq`` (so a
        session just made works, and one just revoked is refused, on every worker); False on
        timeout. Workers that disconnect meanwhile no longer count."""
        return await self._wait_all(lambda w: w.credentials >= seq, timeout)

    async def _wait_all(self, done: Callable[[_Worker], bool], timeout: float) -> bool:
        """Wait until ``done`` holds for every connected worker; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    pending = [w for w in self._workers.values() if not done(w)]
                    if not pending:
                        return True
                    waiter = pending[0]
                    waiter.changed.clear()
                    await waiter.changed.wait()
        except TimeoutError:
            return False

    async def wait_drained(self, version: int, timeout: float) -> bool:
        """Wait until every connected worker has drained ``version``; False on timeout.

        Workers that disconnect meanwhile no longer count: they hold no requests.
        """
        return await self._wait_all(lambda w: w.drained >= version, timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        worker: _Worker | None = None
        try:
            hello = await asyncio.wait_for(reader.readline(), timeout=10)
            message = json.loads(hello) if hello else {}
            if message.get("type") != "hello" or not hmac.compare_digest(
                str(message.get("token", "")).encode(), self._token
            ):
                log.warning("control channel: refused a connection without the node token")
                return
            hello_msg = cast(HelloMessage, message)
            worker = _Worker(
                worker=int(hello_msg["worker"]), pid=int(hello_msg["pid"]), writer=writer
            )
            old = self._workers.pop(worker.worker, None)
            if old is not None:
                old.writer.close()
            self._workers[worker.worker] = worker
            writer.write(_encode(SnapshotMessage(type="snapshot", snapshot=self._snapshot)))
            if self._credentials_source is not None:
                # Same writer, same turn of the loop: no change published meanwhile can
                # arrive before the table it changes.
                table = self._credentials_source()
                table["seq"] = self._credentials_seq
                writer.write(_encode(table))
            while line := await reader.readline():
                self._handle(worker, json.loads(line))
        except (ConnectionError, TimeoutError, json.JSONDecodeError, ValueError, KeyError) as exc:
            log.debug("control channel closed: %s", exc)
        finally:
            if worker is not None and self._workers.get(worker.worker) is worker:
                del self._workers[worker.worker]
                worker.changed.set()
                if self._on_worker_gone is not None:
                    self._on_worker_gone(worker.worker)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "applied":
            worker.applied = max(worker.applied, int(message["version"]))
            self._joined.set()
        elif kind == "drained":
            worker.drained = max(worker.drained, int(message["version"]))
            worker.applied = max(worker.applied, worker.drained)
            self._joined.set()
        elif kind == "credentials_applied":
            worker.credentials = max(worker.credentials, int(message["seq"]))
        elif kind == "metrics" and self._on_metrics is not None:
            self._on_metrics(worker.worker, cast(MetricsMessage, message)["metrics"])
        elif kind == "usage" and self._on_usage is not None:
            usage = cast(UsageMessage, message)
            usage["worker"] = worker.worker  # as authenticated by its hello, not as claimed
            self._on_usage(usage)
        elif kind == "spans" and self._on_spans is not None:
            spans = cast(SpansMessage, message)
            spans["worker"] = worker.worker
            self._on_spans(spans)
        elif kind == SPAN_ROWS and self._on_spans is not None:
            self._on_spans(
                SpansMessage(
                    type="spans",
                    worker=worker.worker,
                    spans=expand_span_rows(message["kinds"], message["rows"]),
                    dropped=int(message.get("dropped", 0)),
                )
            )
        worker.changed.set()


class ControlClient:
    """A gateway worker's end of the channel."""

    def __init__(self, host: str, port: int, token: str, worker: int) -> None:
        self._host, self._port, self._token, self._worker = host, port, token, worker
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self._host, self._port, limit=_MAX_LINE
        )
        self._send(
            HelloMessage(type="hello", token=self._token, worker=self._worker, pid=os.getpid())
        )

    async def run(
        self,
        on_snapshot: Callable[[GatewaySnapshot], Awaitable[None]],
        on_credentials: Callable[[CredentialsMessage], None] | None = None,
    ) -> None:
        """Feed every snapshot to ``on_snapshot`` (and every credentials message to
        ``on_credentials``) until the control plane goes away.

        ``on_snapshot`` applies the snapshot and returns; draining is reported separately
        with :meth:`drained`. Raises :class:`ChannelClosed` when the connection ends.
        """
        if self._reader is None:
            raise TransportError("connect() first")
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if message.get("type") == "snapshot":
                    snapshot = cast(GatewaySnapshot, message["snapshot"])
                    await on_snapshot(snapshot)
                    self._send({"type": "applied", "version": snapshot["version"]})
                elif message.get("type") == "credentials":
                    if on_credentials is not None:
                        on_credentials(cast(CredentialsMessage, message))
                    self._send({"type": "credentials_applied", "seq": int(message.get("seq", 0))})
        finally:
            self.close()
        raise ChannelClosed("the control plane closed the channel")

    def drained(self, version: int) -> None:
        """Report that no request is in flight any more to instances dropped by ``version``."""
        self._send({"type": "drained", "version": version})

    def metrics(self, metrics: WorkerMetrics) -> None:
        """Report this worker's cumulative counters."""
        self._send({"type": "metrics", "worker": self._worker, "metrics": metrics})

    def usage(self, message: UsageMessage) -> None:
        """Report sessions seen and requests refused since the last report."""
        self._send(message)

    def spans(self, spans: list[SpanRecord], dropped: int) -> None:
        """Report the spans finished since the last report."""
        self._send({"type": "spans", "worker": self._worker, "spans": spans, "dropped": dropped})

    def span_rows(self, kinds: bytes, rows: bytes, dropped: int) -> None:
        """:meth:`spans` in the compact form (see ``_spans``): ``kinds`` and ``rows`` are
        JSON arrays the gateway formats itself; the control plane receives SpanRecords."""
        if self._writer is None or self._writer.is_closing():
            return
        # Pieces, not one joined copy: a full report is megabytes.
        self._writer.writelines(
            (
                b'{"type":"span_rows","worker":%d,"dropped":%d,"kinds":' % (self._worker, dropped),
                kinds,
                b',"rows":',
                rows,
                b"}\n",
            )
        )

    def _send(self, message: ControlMessage) -> None:
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(_encode(message))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
