"""Per-worker counters in plain objects (one event loop, so no locks), their WorkerMetrics
snapshot for the control channel, and the Prometheus text the node serves for all workers."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

from courtyard.contracts import LATENCY_BUCKETS, LatencyHistogram, WorkerMetrics

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
    """A worker's cumulative counters: requests, latency, upstream errors, in flight."""

    __slots__ = ("apps", "in_flight", "upstream_errors")

    def __init__(self) -> None:
        self.apps: dict[str, AppCounters] = {}
        self.upstream_errors: dict[str, int] = {}
        self.in_flight = 0

    def record(self, app: str, status: int, seconds: float | None) -> None:
        """Count one finished request; ``seconds`` None keeps it out of the histogram."""
        counters = self.apps.get(app)
        if counters is None:
            counters = self.apps[app] = AppCounters()
        counters.classes[status // 100 if 100 <= status < 600 else 5] += 1
        if seconds is None:
            return
        # Prometheus `le` buckets: a value equal to a bound falls in that bound's bucket.
        counters.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counters.sum += seconds
        counters.count += 1

    def upstream_error(self, app: str, kind: str) -> None:
        """Count an upstream failure: ``connect``, ``timeout``, ``reset`` or ``protocol``."""
        key = app + "|" + kind
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def snapshot(self) -> WorkerMetrics:
        """A copy in the control channel's WorkerMetrics shape."""
        requests: dict[str, int] = {}
        latency: dict[str, LatencyHistogram] = {}
        for app, counters in self.apps.items():
            for index in range(1, 6):
                if counters.classes[index]:
                    requests[f"{app}|{_CLASS_NAMES[index]}"] = counters.classes[index]
            if counters.count:
                latency[app] = LatencyHistogram(
                    buckets=list(counters.buckets), sum=counters.sum, count=counters.count
                )
        return {
            "requests": requests,
            "latency": latency,
            "upstream_errors": dict(self.upstream_errors),
            "in_flight": self.in_flight,
        }


def _label(value: str) -> str:
    # Text exposition format: backslash, double quote and line feed are escaped in labels.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def render_metrics(metrics_by_worker: Mapping[int, WorkerMetrics]) -> str:
    """Prometheus text exposition (format 0.0.4) of the sum over every worker's counters."""
    requests: dict[tuple[str, str], int] = {}
    errors: dict[tuple[str, str], int] = {}
    latency: dict[str, tuple[list[int], float, int]] = {}
    in_flight = 0
    for metrics in metrics_by_worker.values():
        in_flight += metrics["in_flight"]
        for key, count in metrics["requests"].items():
            app, _, code_class = key.rpartition("|")
            requests[app, code_class] = requests.get((app, code_class), 0) + count
        for key, count in metrics["upstream_errors"].items():
            app, _, kind = key.rpartition("|")
            errors[app, kind] = errors.get((app, kind), 0) + count
        for app, histogram in metrics["latency"].items():
            buckets, total, count = latency.get(app, ([0] * (len(LATENCY_BUCKETS) + 1), 0.0, 0))
            merged = [a + b for a, b in zip(buckets, histogram["buckets"], strict=False)]
            latency[app] = (merged, total + histogram["sum"], count + histogram["count"])

    lines = [
        "# HELP courtyard_gateway_requests_total Requests answered by the gateway.",
        "# TYPE courtyard_gateway_requests_total counter",
    ]
    for (app, code_class), count in sorted(requests.items()):
        lines.append(
            f'courtyard_gateway_requests_total{{app="{_label(app)}",'
            f'code_class="{_label(code_class)}"}} {count}'
        )
    lines += [
        "# HELP courtyard_gateway_request_duration_seconds Time from request to response end.",
        "# TYPE courtyard_gateway_request_duration_seconds histogram",
    ]
    bounds = [*LATENCY_BUCKETS, float("inf")]
    for app, (buckets, total, count) in sorted(latency.items()):
        name = _label(app)
        cumulative = 0
        for bound, bucket in zip(bounds, buckets, strict=False):
            cumulative += bucket
            lines.append(
                f'courtyard_gateway_request_duration_seconds_bucket{{app="{name}",'
                f'le="{_number(bound)}"}} {cumulative}'
            )
        lines.append(f'courtyard_gateway_request_duration_seconds_sum{{app="{name}"}} {total!r}')
        lines.append(f'courtyard_gateway_request_duration_seconds_count{{app="{name}"}} {count}')
    lines += [
        "# HELP courtyard_gateway_in_flight_requests Requests being answered now.",
        "# TYPE courtyard_gateway_in_flight_requests gauge",
        f"courtyard_gateway_in_flight_requests {in_flight}",
        "# HELP courtyard_gateway_upstream_errors_total Failures talking to app instances.",
        "# TYPE courtyard_gateway_upstream_errors_total counter",
    ]
    for (app, kind), count in sorted(errors.items()):
        lines.append(
            f'courtyard_gateway_upstream_errors_total{{app="{_label(app)}",'
            f'kind="{_label(kind)}"}} {count}'
        )
    return "\n".join(lines) + "\n"
