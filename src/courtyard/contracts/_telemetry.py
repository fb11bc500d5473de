"""Observability vocabulary: SLO and remediation declarations (from the manifest), and the
spans that gateway workers and apps report to the control plane's trace store.

Stdlib only: the catalog produces these, the telemetry service consumes them, the gateway and
the SDK send spans in this shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

Indicator = Literal["availability", "latency"]
Severity = Literal["page", "ticket"]
RemediationAction = Literal["restart", "rollback", "scale", "page"]

DEFAULT_SLO_WINDOW = 28 * 86400.0  # seconds; the rolling window of an SLO's error budget
DEFAULT_COOLDOWN = 600.0  # seconds between two runs of one remediation of one app

TRACES_SERVICE = "_traces"  # apps POST {MESH}/_traces {"spans": [SpanRecord, ...]}
TRACES_PATH = "/internal/traces"  # where the mesh forwards them (the control plane)


@dataclass(frozen=True, slots=True)
class SloSpec:
    """One service level objective of an app, event-weighted over a rolling window.

    availability: good = answers that are not 5xx; latency: good = answers (of any status)
    that took at most ``threshold`` seconds. The error budget is ``1 - objective``.
    """

    app: str
    name: str  # unique per app, a DNS label
    indicator: Indicator
    objective: float  # a fraction in (0, 1), e.g. 0.999
    window: float = DEFAULT_SLO_WINDOW  # seconds
    threshold: float | None = None  # seconds; latency SLOs only

    @property
    def budget(self) -> float:
        """The share of events allowed to be bad over the window."""
        return 1.0 - self.objective


@dataclass(frozen=True, slots=True)
class RemediationSpec:
    """What the platform does by itself when one of the app's SLO alerts fires."""

    app: str
    severity: Severity  # alerts of this severity trigger it
    action: RemediationAction
    slo: str | None = None  # only this SLO's alerts (None: any of the app's SLOs)
    cooldown: float = DEFAULT_COOLDOWN  # seconds; a second run within it is skipped (audited)


class SpanRecord(TypedDict):
    """One finished span, as the gateway (ingress and mesh hops) and the SDK report it.

    Ids are lower-case hex as in W3C Trace Context; names are bounded (method and route
    template, never a raw path).
    """

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None  # 16 hex digits, None for a root span
    name: str  # e.g. "GET /expenses/" or "mesh GET notes"
    service: str  # "gateway", "mesh" or the app's name
    kind: Literal["server", "client", "internal"]
    start: float  # Unix seconds
    duration: float  # seconds
    status: int  # HTTP status, 0 when there was none
    error: bool
    attributes: NotRequired[dict[str, str | int | float | bool]]


class SpansMessage(TypedDict):
    """Spans a worker finished since its last report (sent at most once a second)."""

    type: Literal["spans"]
    worker: int
    spans: list[SpanRecord]
    dropped: int  # spans over the worker's buffer limit, not reported
