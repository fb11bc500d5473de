"""The telemetry service's REST routers: alerts and silences, SLO status and exports, traces
(and the apps' span reports)."""

from courtyard.telemetry._alerts_api import alerts_router, parse_duration
from courtyard.telemetry._slo_api import slo_router, status_document
from courtyard.telemetry._traces_api import span_from, traces_router

__all__ = [
    "alerts_router",
    "parse_duration",
    "slo_router",
    "span_from",
    "status_document",
    "traces_router",
]
