"""Telemetry: the fleet's signals as one service — minute series of what the gateway and mesh
counted, SLO budgets and burn rates, alerts with notifications and runbook actions, and the
store of recent traces. Pure maths in ``_slo``/``_series``; asyncio and I/O in thin shells.
"""

from courtyard.telemetry._alerts import (
    Alert,
    AlertConfig,
    AlertEngine,
    Burn,
    BurnSource,
)
from courtyard.telemetry._export import openslo_document, prometheus_rules, sloth_document
from courtyard.telemetry._notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Notifier,
    SlackChannel,
    WebhookChannel,
    sign,
    verify_signature,
    webhook_payload,
)
from courtyard.telemetry._otlp import OtlpExporter, readable_span
from courtyard.telemetry._remediate import RemediationActions, Remediator
from courtyard.telemetry._series import AppSeries, CounterDeltas, MinuteRow
from courtyard.telemetry._service import Signals, Telemetry, TelemetryConfig
from courtyard.telemetry._silences import (
    MemorySilenceStore,
    Silence,
    SilenceStore,
    SqlSilenceStore,
)
from courtyard.telemetry._slo import (
    BURN_WINDOWS,
    BurnRule,
    SloStatus,
    budget_remaining,
    burn_rate,
    burn_rules,
)
from courtyard.telemetry._sql import SqlMinuteStore
from courtyard.telemetry._store import (
    MemoryMinuteStore,
    MinuteStore,
)
from courtyard.telemetry._traces import TraceStore, TraceSummary

__all__ = [
    "BURN_WINDOWS",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "Alert",
    "AlertConfig",
    "AlertEngine",
    "AppSeries",
    "Burn",
    "BurnRule",
    "BurnSource",
    "CounterDeltas",
    "MemoryMinuteStore",
    "MemorySilenceStore",
    "MinuteRow",
    "MinuteStore",
    "Notifier",
    "OtlpExporter",
    "RemediationActions",
    "Remediator",
    "Signals",
    "Silence",
    "SilenceStore",
    "SlackChannel",
    "SloStatus",
    "SqlMinuteStore",
    "SqlSilenceStore",
    "Telemetry",
    "TelemetryConfig",
    "TraceStore",
    "TraceSummary",
    "WebhookChannel",
    "budget_remaining",
    "burn_rate",
    "burn_rules",
    "openslo_document",
    "prometheus_rules",
    "readable_span",
    "sign",
    "sloth_document",
    "verify_signature",
    "webhook_payload",
]
