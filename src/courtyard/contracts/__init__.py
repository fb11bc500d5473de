"""Public shapes that cross process boundaries: gateway snapshots, control messages, headers.

Stdlib only; the SDK may import this package and nothing else of Courtyard.
"""

from courtyard.contracts._headers import (
    FORWARDED_PREFIX,
    IDENTITY_HEADER,
    REQUEST_ID,
    TRACEPARENT,
)
from courtyard.contracts._identity import (
    APP_ROLES,
    GATEWAY_AUDIENCE,
    PLATFORM_ROLES,
    AccessDenial,
    AccessPolicy,
    GatewayAuth,
    GatewayCredential,
    IdentityClaims,
    admitting_rule,
    claims_for_app,
    safe_next,
)
from courtyard.contracts._messages import (
    AppliedMessage,
    ControlMessage,
    CredentialsAppliedMessage,
    CredentialsMessage,
    DrainedMessage,
    HelloMessage,
    LatencyHistogram,
    MetricsMessage,
    SnapshotMessage,
    UsageMessage,
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
    "APP_ROLES",
    "FORWARDED_PREFIX",
    "GATEWAY_AUDIENCE",
    "IDENTITY_HEADER",
    "LATENCY_BUCKETS",
    "PLATFORM_ROLES",
    "REQUEST_ID",
    "TRACEPARENT",
    "AccessDenial",
    "AccessPolicy",
    "AppUpstream",
    "AppliedMessage",
    "ControlMessage",
    "CredentialsAppliedMessage",
    "CredentialsMessage",
    "DrainedMessage",
    "GatewayAuth",
    "GatewayCredential",
    "GatewaySnapshot",
    "HelloMessage",
    "IdentityClaims",
    "LatencyHistogram",
    "MetricsMessage",
    "Route",
    "SnapshotMessage",
    "UpstreamInstance",
    "UsageMessage",
    "WorkerMetrics",
    "admitting_rule",
    "claims_for_app",
    "empty_snapshot",
    "safe_next",
]
