"""The built-in store of recent traces: bounded, in memory, good enough to answer
``courtyard traces APP`` without a tracing backend (export with OTLP for history)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from courtyard.contracts import SpanRecord


@dataclass(frozen=True, slots=True)
class TraceSummary:
    trace_id: str
    root: str  # the name of the earliest span without a known parent
    services: tuple[str, ...]
    spans: int
    start: float
    duration: float
    error: bool

    def document(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id,
            "root": self.root,
            "services": list(self.services),
            "spans": self.spans,
            "start": self.start,
            "durationMs": round(self.duration * 1000, 3),
            "error": self.error,
        }


class TraceStore:
    """At most ``max_traces`` traces of at most ``max_spans`` spans each; the trace updated
    longest ago goes first."""

    def __init__(self, max_traces: int = 2000, max_spans: int = 256) -> None:
        self._traces: OrderedDict[str, list[SpanRecord]] = OrderedDict()
        self._max_traces = max_traces
        self._max_spans = max_spans
        self.dropped = 0

    def add(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            trace = self._traces.get(span["trace_id"])
            if trace is None:
                trace = self._traces[span["trace_id"]] = []
                while len(self._traces) > self._max_traces:
                    self._traces.popitem(last=False)
            else:
                self._traces.move_to_end(span["trace_id"])
            if len(trace) >= self._max_spans:
                self.dropped += 1
                continue
            trace.append(span)

    def trace(self, trace_id: str) -> list[SpanRecord] | None:
        trace = self._traces.get(trace_id)
        return sorted(trace, key=lambda s: s["start"]) if trace is not None else None

    def traces(
        self,
        app: str | None = None,
        *,
        slow: bool = False,
        errors: bool = False,
        min_duration: float | None = None,
        limit: int = 20,
    ) -> list[TraceSummary]:
        found = []
        for trace_id in reversed(self._traces):
            spans = self._traces[trace_id]
            if app is not None and not any(_involves(span, app) for span in spans):
                continue
            summary = _summary(trace_id, spans)
            if errors and not summary.error:
                continue
            if min_duration is not None and summary.duration < min_duration:
                continue
            found.append(summary)
        if slow:
            found.sort(key=lambda s: s.duration, reverse=True)
        return found[:limit]

    def __len__(self) -> int:
        return len(self._traces)


def _involves(span: SpanRecord, app: str) -> bool:
    if span["service"] == app:
        return True
    attributes = span.get("attributes") or {}
    return attributes.get("app") == app or attributes.get("target") == app


def _summary(trace_id: str, spans: list[SpanRecord]) -> TraceSummary:
    ids = {span["span_id"] for span in spans}
    ordered = sorted(spans, key=lambda s: s["start"])
    roots = [s for s in ordered if s["parent_id"] is None or s["parent_id"] not in ids]
    root = roots[0] if roots else ordered[0]
    start = ordered[0]["start"]
    end = max(s["start"] + s["duration"] for s in spans)
    services: list[str] = []
    for span in ordered:
        if span["service"] not in services:
            services.append(span["service"])
    return TraceSummary(
        trace_id=trace_id,
        root=f"{root['service']}: {root['name']}",
        services=tuple(services),
        spans=len(spans),
        start=start,
        duration=end - start,
        error=any(s["error"] for s in spans),
    )
