"""Export of the fleet's spans to an OpenTelemetry collector over OTLP/HTTP (protobuf), when an
endpoint is configured: the built-in store keeps recent traces; a collector keeps history.

Spans arrive already finished (from the gateway workers and the apps), so they are turned
into the SDK's ``ReadableSpan`` and handed to its ``OTLPSpanExporter`` in batches from one
background thread; the event loop never waits on the collector.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterable, Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from courtyard.contracts import SpanRecord

log = logging.getLogger("courtyard.telemetry")

_KINDS = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}


def readable_span(record: SpanRecord) -> ReadableSpan:
    """One of our spans as the OpenTelemetry SDK's finished span."""
    context = SpanContext(
        trace_id=int(record["trace_id"], 16),
        span_id=int(record["span_id"], 16),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    parent = None
    if record["parent_id"]:
        parent = SpanContext(
            trace_id=int(record["trace_id"], 16),
            span_id=int(record["parent_id"], 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    start = int(record["start"] * 1e9)
    attributes: dict[str, str | int | float | bool] = dict(record.get("attributes") or {})
    if record["status"]:
        attributes["http.response.status_code"] = record["status"]
    return ReadableSpan(
        name=record["name"],
        context=context,
        parent=parent,
        resource=Resource.create({"service.name": record["service"]}),
        attributes=attributes,
        kind=_KINDS.get(record["kind"], SpanKind.INTERNAL),
        status=Status(StatusCode.ERROR) if record["error"] else Status(StatusCode.UNSET),
        start_time=start,
        end_time=start + int(record["duration"] * 1e9),
    )


class OtlpExporter:
    """Queues spans (bounded: ``max_queue``, more are dropped and counted) and exports them in
    batches of ``batch`` from a background thread."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        batch: int = 512,
        max_queue: int = 20_000,
        interval: float = 1.0,
        timeout: float = 10.0,
        exporter: SpanExporter | None = None,
    ) -> None:
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"  # OTLP/HTTP §"OTLP/HTTP Request": the signal's path
        self._exporter = exporter or OTLPSpanExporter(
            endpoint=url, headers=dict(headers or {}), timeout=timeout
        )
        self._queue: queue.Queue[SpanRecord] = queue.Queue(max_queue)
        self._batch = batch
        self._interval = interval
        self.dropped = 0
        self.exported = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def submit(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            try:
                self._queue.put_nowait(span)
            except queue.Full:
                self.dropped += 1

    def flush(self) -> None:
        """Export everything queued now (in the calling thread)."""
        while True:
            records: list[SpanRecord] = []
            while len(records) < self._batch:
                try:
                    records.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not records:
                return
            try:
                result = self._exporter.export([readable_span(r) for r in records])
            except Exception as exc:  # a collector's failure must not reach the node
                log.warning("OTLP export failed: %s", exc)
                self.dropped += len(records)
                continue
            if result.name == "SUCCESS":
                self.exported += len(records)
            else:
                self.dropped += len(records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.flush()
        self._exporter.shutdown()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
