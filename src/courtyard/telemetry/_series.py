"""The embedded time series: per app, request counts in 1-minute buckets, with bounded memory.

A bucket is a vector ``[total, errors (5xx), latency histogram...]`` (one count per
``LATENCY_BUCKETS`` bound, then +Inf; not cumulative). The last six hours stay in 1-minute
buckets — every short alert window (5m, 30m, 2h, 6h) reads them exactly — and older minutes
are folded into 1-hour buckets, kept for the longest SLO window. An app therefore holds at
most 360 + window/1h vectors (1,032 for 28 days, 2,520 for 90), whatever its traffic.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping

from courtyard.contracts import LATENCY_BUCKETS, LatencyHistogram, WorkerMetrics

WIDTH = 2 + len(LATENCY_BUCKETS) + 1  # total, errors, then the histogram
MINUTE_HORIZON = 360  # minutes kept at 1-minute resolution


def empty() -> list[int]:
    return [0] * WIDTH


def good_within(vector: list[int], threshold: float) -> tuple[int, int]:
    """(timed events, events at or under ``threshold`` seconds) of one vector.

    The threshold is rounded down to a histogram bound: a request between two bounds cannot
    be told apart, so it counts as slow (the conservative side of an SLO).
    """
    buckets = vector[2:]
    timed = sum(buckets)
    within = bisect_right(LATENCY_BUCKETS, threshold + 1e-12)  # bounds <= threshold
    return timed, sum(buckets[:within])


def percentile(vector: list[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of the histogram, interpolated inside its bucket like
    Prometheus' histogram_quantile; None with no timed events."""
    buckets = vector[2:]
    count = sum(buckets)
    if count == 0:
        return None
    rank = q * count
    seen = 0
    lower = 0.0
    for index, bucket in enumerate(buckets):
        upper = LATENCY_BUCKETS[index] if index < len(LATENCY_BUCKETS) else math.inf
        if seen + bucket >= rank and bucket:
            if math.isinf(upper):
                return lower  # above the last bound: its lower edge is all we know
            return lower + (upper - lower) * (rank - seen) / bucket
        seen += bucket
        lower = upper if not math.isinf(upper) else lower
    return lower


class AppSeries:
    """One app's buckets: minutes (recent) and hours (older)."""

    __slots__ = ("hours", "minutes")

    def __init__(self) -> None:
        self.minutes: dict[int, list[int]] = {}
        self.hours: dict[int, list[int]] = {}

    def add(self, minute: int, delta: list[int]) -> None:
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = empty()
        for index, value in enumerate(delta):
            if value:
                bucket[index] += value

    def sum(self, now_minute: int, window_minutes: int) -> list[int]:
        """The vector over the trailing ``window_minutes`` ending with ``now_minute`` (the
        current, partial minute counts)."""
        first = now_minute - window_minutes + 1
        total = empty()
        for minute, vector in self.minutes.items():
            if first <= minute <= now_minute:
                _add(total, vector)
        if window_minutes > MINUTE_HORIZON:
            first_hour = first // 60
            for hour, vector in self.hours.items():
                if hour >= first_hour:
                    _add(total, vector)
        return total

    def compact(self, now_minute: int, retention_minutes: int) -> None:
        """Fold minutes past the horizon into hours; drop hours past the retention."""
        horizon = now_minute - MINUTE_HORIZON
        for minute in [m for m in self.minutes if m <= horizon]:
            vector = self.minutes.pop(minute)
            bucket = self.hours.get(minute // 60)
            if bucket is None:
                self.hours[minute // 60] = vector
            else:
                _add(bucket, vector)
        oldest_hour = (now_minute - retention_minutes) // 60
        for hour in [h for h in self.hours if h < oldest_hour]:
            del self.hours[hour]

    def size(self) -> int:
        return len(self.minutes) + len(self.hours)

    def dump(self) -> dict[str, dict[str, list[int]]]:
        return {
            "minutes": {str(k): v for k, v in self.minutes.items()},
            "hours": {str(k): v for k, v in self.hours.items()},
        }

    @classmethod
    def load(cls, document: Mapping[str, Mapping[str, list[int]]]) -> AppSeries:
        series = cls()
        for key, vector in document.get("minutes", {}).items():
            if len(vector) == WIDTH:
                series.minutes[int(key)] = [int(v) for v in vector]
        for key, vector in document.get("hours", {}).items():
            if len(vector) == WIDTH:
                series.hours[int(key)] = [int(v) for v in vector]
        return series


def _add(into: list[int], vector: Iterable[int]) -> None:
    for index, value in enumerate(vector):
        into[index] += value


def _hist_into(vector: list[int], histogram: LatencyHistogram) -> None:
    for index, count in enumerate(histogram["buckets"][: WIDTH - 2]):
        vector[2 + index] += count


def app_vectors(metrics: WorkerMetrics) -> dict[str, list[int]]:
    """A worker's cumulative counters per app: gateway requests over every route plus the
    mesh calls the app answered."""
    vectors: dict[str, list[int]] = {}

    def vector(app: str) -> list[int]:
        found = vectors.get(app)
        if found is None:
            found = vectors[app] = empty()
        return found

    for key, count in metrics["requests"].items():
        app, _, rest = key.partition("|")
        code_class = rest.rpartition("|")[2]
        if app == "-":
            continue
        target = vector(app)
        target[0] += count
        if code_class == "5xx":
            target[1] += count
    for key, histogram in metrics["latency"].items():
        app = key.partition("|")[0]
        if app != "-":
            _hist_into(vector(app), histogram)
    for key, count in metrics.get("mesh", {}).items():
        edge, _, code_class = key.rpartition("|")
        app = edge.partition(">")[2]
        if not app or app.startswith("_"):
            continue  # built-in services (events, traces) have no SLO
        target = vector(app)
        target[0] += count
        if code_class == "5xx":
            target[1] += count
    for key, histogram in metrics.get("mesh_latency", {}).items():
        app = key.partition(">")[2]
        if app and not app.startswith("_"):
            _hist_into(vector(app), histogram)
    return vectors


class CounterDeltas:
    """Turns each worker's cumulative counters into what happened since its last report.

    A counter that went down means the worker restarted (its counters began again at zero),
    so the new value is the delta, as Prometheus' ``rate()`` treats counter resets.
    """

    def __init__(self) -> None:
        self._last: dict[int, dict[str, list[int]]] = {}

    def deltas(self, worker: int, metrics: WorkerMetrics) -> dict[str, list[int]]:
        current = app_vectors(metrics)
        previous = self._last.get(worker, {})
        self._last[worker] = current
        result: dict[str, list[int]] = {}
        for app, vector in current.items():
            before = previous.get(app)
            if before is None or any(now < then for now, then in zip(vector, before, strict=True)):
                delta = vector
            else:
                delta = [now - then for now, then in zip(vector, before, strict=True)]
            if any(delta):
                result[app] = delta
        return result

    def forget(self, worker: int) -> None:
        self._last.pop(worker, None)
