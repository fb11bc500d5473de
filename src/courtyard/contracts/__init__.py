"""Public shapes that cross process boundaries: gateway snapshots, control messages, headers.

Stdlib only; the SDK may import this package and nothing else of Courtyard.
"""

from courtyard.contracts._headers import (
    FORWARDED_PREFIX,
    IDENTITY_HEADER,
    REQUEST_ID,
    TRACEPARENT,
)
from courtyard.contracts._messages import (
    AppliedMessage,
    ControlMessage,
    DrainedMessage,
    HelloMessage,
    LatencyHistogram,
    MetricsMessage,
    SnapshotMessage,
    WorkerMetrics,
)
from courtyard.contracts._snapshot import (
    LATENCY_BUCKETS,
    AppUpstream,
    GatewaySnapshot,
    Route,
    UpstreamInstance,
    empty_snapshot,
)

__all__ = [
    "FORWARDED_PREFIX",
    "IDENTITY_HEADER",
    "LATENCY_BUCKETS",
    "REQUEST_ID",
    "TRACEPARENT",
    "AppUpstream",
    "AppliedMessage",
    "ControlMessage",
    "DrainedMessage",
    "GatewaySnapshot",
    "HelloMessage",
    "LatencyHistogram",
    "MetricsMessage",
    "Route",
    "SnapshotMessage",
    "UpstreamInstance",
    "WorkerMetrics",
    "empty_snapshot",
]
