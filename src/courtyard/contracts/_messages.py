"""Messages on the control channel between the control plane and gateway workers.

One JSON object per line over a loopback TCP connection. The worker speaks first (``hello``
with the node's shared token); from then on the control plane sends ``snapshot`` whenever the
configuration changes, and the worker answers ``applied`` at once and ``drained`` when every
request it had in flight to instances the snapshot removed has finished.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from courtyard.contracts._identity import AccessDenial, GatewayCredential
from courtyard.contracts._snapshot import GatewaySnapshot
from courtyard.contracts._telemetry import SpansMessage


class HelloMessage(TypedDict):
    type: Literal["hello"]
    token: str
    worker: int
    pid: int


class SnapshotMessage(TypedDict):
    type: Literal["snapshot"]
    snapshot: GatewaySnapshot


class AppliedMessage(TypedDict):
    type: Literal["applied"]
    version: int


class DrainedMessage(TypedDict):
    type: Literal["drained"]
    version: int


class CredentialsMessage(TypedDict):
    """Sessions and API tokens the gateway accepts, and access tokens it must refuse.

    Sent whole (``full``) when a worker connects, then as changes: a revocation reaches every
    worker in the time it takes to write one line.
    """

    type: Literal["credentials"]
    seq: int  # set by the control channel: increases with every message; workers echo it
    full: bool  # True: replace the whole table (and the revoked list) with this message
    upsert: list[GatewayCredential]
    revoke: list[str]  # credential keys
    revoked_jti: list[str]  # `jti` of revoked JWT access tokens (until they expire anyway)


class CredentialsAppliedMessage(TypedDict):
    """A worker has applied every credentials message up to ``seq``: a session made or
    revoked before that point is in force there."""

    type: Literal["credentials_applied"]
    seq: int


class UsageMessage(TypedDict):
    """What a worker saw since its last report: credentials used (for idle timeouts),
    requests it refused (for the audit trail) and mesh edges used (for the dependency graph).
    Sent at most once a second, when non-empty."""

    type: Literal["usage"]
    worker: int
    used: list[str]  # credential keys
    denials: list[AccessDenial]
    edges: NotRequired[list[str]]  # "caller>target" or "caller>_events/<topic>", when any


class LatencyHistogram(TypedDict):
    """Cumulative-free bucket counts (one per LATENCY_BUCKETS bound, then +Inf), sum, count."""

    buckets: list[int]
    sum: float
    count: int


class WorkerMetrics(TypedDict):
    """A worker's counters since it started (cumulative, never reset while it lives).

    Labels are bounded: ``route`` is the matched route's path prefix from the catalog (the
    route template), never the request's path; "-" stands for no route or no app.
    """

    requests: dict[str, int]  # "app|route|2xx" -> count of requests through the gateway
    latency: dict[str, LatencyHistogram]  # "app|route" -> seconds to the response end
    upstream_errors: dict[str, int]  # "app|connect", "app|timeout", "app|reset", "app|protocol"
    in_flight: int
    mesh: NotRequired[dict[str, int]]  # "caller>target|2xx" -> count of mesh calls
    mesh_latency: NotRequired[dict[str, LatencyHistogram]]  # "caller>target" -> seconds


class MetricsMessage(TypedDict):
    type: Literal["metrics"]
    worker: int
    metrics: WorkerMetrics


ControlMessage = (
    HelloMessage
    | SnapshotMessage
    | AppliedMessage
    | DrainedMessage
    | MetricsMessage
    | CredentialsMessage
    | CredentialsAppliedMessage
    | UsageMessage
    | SpansMessage
)
