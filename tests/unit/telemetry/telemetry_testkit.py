"""Shared numbers and counters of the telemetry tests."""

from __future__ import annotations

from courtyard.contracts import LATENCY_BUCKETS, WorkerMetrics

DAY = 86400.0
START = 1_700_000_040.0  # a whole minute


def metrics(app: str, ok: int, errors: int = 0, *, seconds_bucket: int = 3) -> WorkerMetrics:
    """Cumulative counters of one worker: ``ok`` 2xx and ``errors`` 5xx, all timed into one
    histogram bucket (index into LATENCY_BUCKETS)."""
    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    buckets[seconds_bucket] = ok + errors
    return {
        "requests": {f"{app}|/apps/{app}/|2xx": ok, f"{app}|/apps/{app}/|5xx": errors},
        "latency": {f"{app}|/apps/{app}/": {"buckets": buckets, "sum": 0.0, "count": ok + errors}},
        "upstream_errors": {},
        "in_flight": 0,
    }
