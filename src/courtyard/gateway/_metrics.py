"""Per-worker counters in plain objects (one event loop, so no locks), their WorkerMetrics
snapshot for the control channel, and the Prometheus text the node serves for all workers."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

from courtyard.contracts import LATENCY_BUCKETS, LatencyHistogram, SpanRecord, WorkerMetrics
from courtyard.transport import expand_span_rows

_CLASS_NAMES = ("", "1xx", "2xx", "3xx", "4xx", "5xx")


class AppCounters:
    """One app's counters: answers by status class, and the latency histogram."""

    __slots__ = ("buckets", "classes", "count", "sum")

    def __init__(self) -> None:
        self.classes = [0] * 6  # index status // 100
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0


class Metrics:
    """A worker's cumulative counters: requests by app and route template, mesh calls by
    caller and target, latency, upstream errors, in flight; and the spans finished since the
    last report."""

    __slots__ = ("apps", "dropped", "in_flight", "kinds", "mesh", "spans", "upstream_errors")

    def __init__(self) -> None:
        self.apps: dict[tuple[str, str], AppCounters] = {}  # (app, route) -> counters
        self.mesh: dict[tuple[str, str], AppCounters] = {}  # (caller, target) -> counters
        self.upstream_errors: dict[str, int] = {}
        self.in_flight = 0
        # Finished spans as SPAN_ROW bytes, formatted when they finish (their values are
        # still in the processor's cache then), and what their kind numbers stand for:
        # (method, app, route, caller, instance id) -> number, in order.
        self.spans: list[bytes] = []
        self.kinds: dict[tuple[bytes, str, str, str, str | None], int] = {}
        self.dropped = 0

    def record(self, app: str, route: str, status: int, seconds: float | None) -> None:
        """Count one finished request; ``seconds`` None keeps it out of the histogram."""
        key = (app, route)
        counters = self.apps.get(key)
        if counters is None:
            counters = self.apps[key] = AppCounters()
        # _count, inlined: this runs once per request.
        counters.classes[status // 100 if 100 <= status < 600 else 5] += 1
        if seconds is not None:
            counters.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            counters.sum += seconds
            counters.count += 1

    def record_mesh(self, caller: str, target: str, status: int, seconds: float | None) -> None:
        """Count one finished call through the mesh listener."""
        key = (caller, target)
        counters = self.mesh.get(key)
        if counters is None:
            counters = self.mesh[key] = AppCounters()
        _count(counters, status, seconds)

    def span(
        self,
        trace: tuple[bytes, bytes, bytes, bool],
        start: float,
        seconds: float,
        status: int,
        method: bytes,
        app: str,
        route: str,
        caller: str,
        request_id: bytes,
        instance: str | None,
    ) -> None:
        """Keep one finished span until the next report (at most MAX_SPANS of them).

        ``trace`` is (trace id, span id, parent id or b"", sampled); ``route`` the route
        template ("-" for none); ``caller`` the calling app of a mesh call, "" otherwise.
        ClientConnection._observe does the same inline."""
        spans = self.spans
        if len(spans) >= MAX_SPANS:
            self.dropped += 1
            return
        key = (method, app, route, caller, instance)
        kind = self.kinds.get(key)
        if kind is None:
            kind = self.kinds[key] = len(self.kinds)
        parent = trace[2]
        spans.append(
            SPAN_ROW
            % (
                trace[0],
                trace[1],
                b'"' + parent + b'"' if parent else b"null",
                int(start * 1e6),
                int(seconds * 1e6),
                status,
                kind,
                request_id,
            )
        )

    def take_span_rows(self) -> tuple[bytes, bytes, int, int]:
        """The spans finished since the last call in the channel's compact form: (kinds,
        rows) as JSON arrays, how many rows, and how many spans were dropped."""
        rows, dropped, kinds = self.spans, self.dropped, self.kinds
        self.spans, self.dropped = [], 0
        if len(kinds) >= _MAX_KINDS:
            self.kinds = {}
        table = b"[" + b",".join(map(_kind, kinds)) + b"]"  # dicts keep insertion order
        count = len(rows)
        if rows:
            rows[0] = rows[0][1:]
        return table, b"[" + b"".join(rows) + b"]", count, dropped

    def take_spans(self) -> tuple[list[SpanRecord], int]:
        """The spans finished since the last call, and how many were dropped."""
        kinds, rows, _, dropped = self.take_span_rows()
        return expand_span_rows(json.loads(kinds), json.loads(rows)), dropped

    def upstream_error(self, app: str, kind: str) -> None:
        """Count an upstream failure: ``connect``, ``timeout``, ``reset`` or ``protocol``."""
        key = app + "|" + kind
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def snapshot(self) -> WorkerMetrics:
        """A copy in the control channel's WorkerMetrics shape."""
        requests, latency = _flatten(self.apps, "|")
        mesh, mesh_latency = _flatten(self.mesh, ">")
        return {
            "requests": requests,
            "latency": latency,
            "upstream_errors": dict(self.upstream_errors),
            "in_flight": self.in_flight,
            "mesh": mesh,
            "mesh_latency": mesh_latency,
        }


MAX_SPANS = 10_000  # spans held between two reports; more are dropped and counted


def _count(counters: AppCounters, status: int, seconds: float | None) -> None:
    counters.classes[status // 100 if 100 <= status < 600 else 5] += 1
    if seconds is None:
        return
    # Prometheus `le` buckets: a value equal to a bound falls in that bound's bucket.
    counters.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
    counters.sum += seconds
    counters.count += 1


def _flatten(
    table: dict[tuple[str, str], AppCounters], joiner: str
) -> tuple[dict[str, int], dict[str, LatencyHistogram]]:
    requests: dict[str, int] = {}
    latency: dict[str, LatencyHistogram] = {}
    for (first, second), counters in table.items():
        key = first + joiner + second
        for index in range(1, 6):
            if counters.classes[index]:
                requests[f"{key}|{_CLASS_NAMES[index]}"] = counters.classes[index]
        if counters.count:
            latency[key] = LatencyHistogram(
                buckets=list(counters.buckets), sum=counters.sum, count=counters.count
            )
    return requests, latency


# A span as a row of the control channel's compact form (courtyard.transport._spans), with a
# comma before it so that the array is one join: trace id, span id, parent id (quoted) or
# null, start and duration in microseconds, status, kind, request id. Ids are lower-case hex
# and the request id [A-Za-z0-9._:-]: JSON-safe as they are.
SPAN_ROW = b',["%s","%s",%s,%d,%d,%d,%d,"%s"]'
_MAX_KINDS = 4096  # instance ids come and go: the table starts afresh when it grows this big


def _kind(key: tuple[bytes, str, str, str, str | None]) -> bytes:
    """The JSON of a span kind: [name, service, attributes, instance id or null]."""
    method, app, route, caller, instance = key
    verb = method.decode("latin-1")
    if caller:
        # A hop through the mesh listener: named after the target, never the path.
        kind: list[Any] = [f"{verb} {app}", "mesh", {"caller": caller, "target": app}, instance]
    else:
        kind = [f"{verb} {route}", "gateway", {"app": app, "route": route}, instance]
    return json.dumps(kind, separators=(",", ":")).encode()


def _label(value: str) -> str:
    # Text exposition format: backslash, double quote and line feed are escaped in labels.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def render_metrics(metrics_by_worker: Mapping[int, WorkerMetrics]) -> str:
    """Prometheus text exposition (format 0.0.4) of the sum over every worker's counters."""
    requests: dict[tuple[str, ...], int] = {}
    latency: dict[tuple[str, ...], tuple[list[int], float, int]] = {}
    mesh: dict[tuple[str, ...], int] = {}
    mesh_latency: dict[tuple[str, ...], tuple[list[int], float, int]] = {}
    errors: dict[tuple[str, ...], int] = {}
    in_flight = 0
    for metrics in metrics_by_worker.values():
        in_flight += metrics["in_flight"]
        _sum_counts(requests, metrics["requests"], "|")
        _sum_histograms(latency, metrics["latency"], "|")
        _sum_counts(mesh, metrics.get("mesh", {}), ">")
        _sum_histograms(mesh_latency, metrics.get("mesh_latency", {}), ">")
        for key, count in metrics["upstream_errors"].items():
            app, _, kind = key.rpartition("|")
            errors[app, kind] = errors.get((app, kind), 0) + count

    lines: list[str] = []
    _counter_lines(
        lines,
        "courtyard_gateway_requests_total",
        "Requests answered by the gateway, by app, route template and status class.",
        ("app", "route", "code_class"),
        requests,
    )
    _histogram_lines(
        lines,
        "courtyard_gateway_request_duration_seconds",
        "Time from request to response end, by app and route template.",
        ("app", "route"),
        latency,
    )
    _counter_lines(
        lines,
        "courtyard_mesh_requests_total",
        "Calls through the mesh, by calling app, target and status class.",
        ("caller", "target", "code_class"),
        mesh,
    )
    _histogram_lines(
        lines,
        "courtyard_mesh_request_duration_seconds",
        "Time from mesh call to response end, by calling app and target.",
        ("caller", "target"),
        mesh_latency,
    )
    lines += [
        "# HELP courtyard_gateway_in_flight_requests Requests being answered now.",
        "# TYPE courtyard_gateway_in_flight_requests gauge",
        f"courtyard_gateway_in_flight_requests {in_flight}",
    ]
    _counter_lines(
        lines,
        "courtyard_gateway_upstream_errors_total",
        "Failures talking to app instances.",
        ("app", "kind"),
        errors,
    )
    return "\n".join(lines) + "\n"


def _split(key: str, joiner: str) -> tuple[str, ...]:
    """ "app|route|2xx" -> (app, route, 2xx); "caller>target|2xx" -> (caller, target, 2xx).
    A route template never holds "|" (routes are paths); the class is always last."""
    head, _, last = key.rpartition("|")
    if joiner == "|":
        first, _, second = head.partition("|")
    else:
        first, _, second = head.partition(">")
    return first, second, last


def _sum_counts(into: dict[tuple[str, ...], int], counts: Mapping[str, int], joiner: str) -> None:
    for key, count in counts.items():
        labels = _split(key, joiner)
        into[labels] = into.get(labels, 0) + count


def _sum_histograms(
    into: dict[tuple[str, ...], tuple[list[int], float, int]],
    histograms: Mapping[str, LatencyHistogram],
    joiner: str,
) -> None:
    for key, histogram in histograms.items():
        first, _, second = key.partition(joiner)
        labels = (first, second)
        buckets, total, count = into.get(labels, ([0] * (len(LATENCY_BUCKETS) + 1), 0.0, 0))
        merged = [a + b for a, b in zip(buckets, histogram["buckets"], strict=False)]
        into[labels] = (merged, total + histogram["sum"], count + histogram["count"])


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{name}="{_label(value)}"' for name, value in zip(names, values, strict=True))


def _counter_lines(
    lines: list[str],
    name: str,
    help_text: str,
    names: tuple[str, ...],
    counts: Mapping[tuple[str, ...], int],
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    for values, count in sorted(counts.items()):
        lines.append(f"{name}{{{_labels(names, values)}}} {count}")


def _histogram_lines(
    lines: list[str],
    name: str,
    help_text: str,
    names: tuple[str, ...],
    histograms: Mapping[tuple[str, ...], tuple[list[int], float, int]],
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    bounds = [*LATENCY_BUCKETS, float("inf")]
    for values, (buckets, total, count) in sorted(histograms.items()):
        labels = _labels(names, values)
        cumulative = 0
        for bound, bucket in zip(bounds, buckets, strict=False):
            cumulative += bucket
            lines.append(f'{name}_bucket{{{labels},le="{_number(bound)}"}} {cumulative}')
        lines.append(f"{name}_sum{{{labels}}} {total!r}")
        lines.append(f"{name}_count{{{labels}}} {count}")
