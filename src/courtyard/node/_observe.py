"""The node's observability wiring: the telemetry service fed by the workers, the trace store,
the alert engine with its channels and runbook actions, all following the catalog.

Built once by ``Node.run``; the clock is injected so a fault drill can compress hours of SLO
windows into seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from courtyard.audit import Actor, AuditLog
from courtyard.catalog import App
from courtyard.contracts import SpanRecord, SpansMessage, WorkerMetrics
from courtyard.core import Clock
from courtyard.lifecycle import Caller, Lifecycle
from courtyard.node._config import NodeConfig
from courtyard.store import Database
from courtyard.telemetry import (
    AlertConfig,
    AlertEngine,
    Notifier,
    OtlpExporter,
    Remediator,
    SlackChannel,
    SqlMinuteStore,
    SqlSilenceStore,
    Telemetry,
    TraceStore,
    WebhookChannel,
)

log = logging.getLogger("courtyard.node")

MAX_REPLICAS = 64
REMEDIATION = Caller(Actor(kind="system", id="courtyard-remediation"))


class LifecycleActions:
    """Runbook actions (courtyard.telemetry.RemediationActions) done by the lifecycle."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    async def restart(self, app: str) -> str:
        rollout = await self._lifecycle.restart(app, REMEDIATION)
        return f"restarting revision {rollout.revision}"

    async def rollback(self, app: str) -> str:
        rollout = await self._lifecycle.rollback(app, None, REMEDIATION)
        return f"rolling back to revision {rollout.revision}"

    async def scale(self, app: str) -> str:
        current = await self._lifecycle.catalog.get(app)
        run = current.manifest.spec.run
        replicas = run.replicas if run is not None else 1
        if replicas >= MAX_REPLICAS:
            return f"already at {MAX_REPLICAS} replicas"
        deployment = await self._lifecycle.scale(app, replicas + 1, REMEDIATION)
        number = deployment.registration.revision.number
        return f"scaling to {replicas + 1} replicas (revision {number})"


class Observability:
    """Telemetry, traces, alerts, notifications and remediation of one node."""

    def __init__(
        self, config: NodeConfig, data_dir: Path, audit: AuditLog, db: Database, clock: Clock
    ) -> None:
        self.clock = clock
        self.config = config
        self.telemetry = Telemetry(SqlMinuteStore(db), clock=clock)
        self.traces = TraceStore()
        # With an OTLP endpoint every span also goes to a collector (history beyond the store).
        self.otlp = OtlpExporter(config.otlp_endpoint) if config.otlp_endpoint else None
        channels: list[WebhookChannel | SlackChannel] = []
        if config.notify_webhook_url and config.notify_webhook_secret:
            channels.append(WebhookChannel(config.notify_webhook_url, config.notify_webhook_secret))
        if config.notify_slack_url:
            channels.append(SlackChannel(config.notify_slack_url))
        self.notifier = Notifier(channels, audit, clock=clock)
        self._audit = audit
        self._db = db
        self.remediator: Remediator | None = None
        self.alerts: AlertEngine | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stages: dict[str, int] = {}  # apps in the catalog by stage (for /metrics)
        self._known: set[str] = set()  # apps in the catalog at the last change

    @property
    def engine(self) -> AlertEngine:
        """The alert engine (exists once :meth:`start` ran)."""
        assert self.alerts is not None, "Observability.start() first"
        return self.alerts

    async def start(self, lifecycle: Lifecycle) -> None:
        """Load saved series and silences, follow the catalog, evaluate and save."""
        await self.telemetry.load()
        self.remediator = Remediator(LifecycleActions(lifecycle), self._audit, clock=self.clock)
        self.alerts = AlertEngine(
            self.telemetry,
            self.notifier,
            self.remediator,
            self._audit,
            clock=self.clock,
            config=AlertConfig(
                interval=self.config.alert_interval, min_events=self.config.alert_min_events
            ),
            silences=SqlSilenceStore(self._db),
        )
        await self.alerts.load()
        lifecycle.on_catalog(self.catalog_changed)
        self._tasks = [
            asyncio.create_task(self.alerts.run(), name="alerts"),
            asyncio.create_task(self._save_forever(), name="telemetry-save"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.alerts is not None:
            await self.alerts.aclose()
        await self.notifier.aclose()
        if self.otlp is not None:
            await asyncio.to_thread(self.otlp.close)
        with contextlib.suppress(OSError):
            await self.telemetry.flush()

    def catalog_changed(self, apps: list[App]) -> None:
        """SLOs and runbooks follow the current revision of every app."""
        names = {app.name for app in apps}
        stages: dict[str, int] = {}
        for app in apps:
            stages[app.stage] = stages.get(app.stage, 0) + 1
        self.stages = stages
        for app in apps:
            self.telemetry.set_slos(app.name, app.manifest.slo_specs())
            if self.remediator is not None:
                self.remediator.set_plan(app.name, app.manifest.remediation_specs())
        for gone in self._known - names:
            self.telemetry.forget(gone)
            if self.remediator is not None:
                self.remediator.forget(gone)
        self._known = names

    def metrics(self, worker: int, metrics: WorkerMetrics) -> None:
        self.telemetry.ingest(worker, metrics)

    def worker_gone(self, worker: int) -> None:
        self.telemetry.worker_gone(worker)

    def spans(self, message: SpansMessage) -> None:
        self.app_spans(message["spans"])

    def app_spans(self, spans: list[SpanRecord]) -> None:
        self.traces.add(spans)
        if self.otlp is not None:
            self.otlp.submit(spans)

    async def _save_forever(self) -> None:
        while True:
            await self.clock.sleep(60)
            try:
                await self.telemetry.flush()
            except Exception:  # the next minute retries
                log.exception("saving the telemetry series failed")
