"""The admin listener: Prometheus metrics of the gateway workers, the app instances, the
control plane and this process.

Labels stay bounded: apps and instance ids come from the catalog and the runtime (a few per
app), SLO names from manifests, windows and severities from fixed lists; never a path or a
user.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import psutil
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from courtyard.contracts import SloSpec
from courtyard.runtime import InstanceStatus
from courtyard.telemetry import BURN_WINDOWS, SloStatus

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Instances(Protocol):
    """The runtime's view of every instance (courtyard.runtime.Supervisor)."""

    def instances(self, app: str | None = None) -> list[InstanceStatus]: ...


class SloSource(Protocol):
    """SLO declarations and their status (courtyard.telemetry.Telemetry)."""

    def slos(self, app: str | None = None) -> list[SloSpec]: ...

    def status(self, spec: SloSpec) -> SloStatus: ...


class FiringAlert(Protocol):
    @property
    def app(self) -> str: ...

    @property
    def severity(self) -> str: ...


class InstanceCollector(Collector):
    """Per instance: CPU seconds, resident memory, restarts, uptime and readiness (psutil)."""

    def __init__(self, runtime: Instances, clock: Callable[[], float] = time.time) -> None:
        self._runtime = runtime
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        labels = ["app", "instance"]
        cpu = CounterMetricFamily(
            "courtyard_instance_cpu_seconds", "CPU time of the instance's process.", labels=labels
        )
        memory = GaugeMetricFamily(
            "courtyard_instance_resident_memory_bytes",
            "Resident memory of the instance's process.",
            labels=labels,
        )
        restarts = CounterMetricFamily(
            "courtyard_instance_restarts",
            "Times the runtime restarted the instance.",
            labels=labels,
        )
        uptime = GaugeMetricFamily(
            "courtyard_instance_uptime_seconds",
            "Seconds since the instance's process started.",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "courtyard_instance_ready", "1 when the instance passes its checks.", labels=labels
        )
        now = self._clock()
        for status in self._runtime.instances():
            values = [status.app, status.id]
            restarts.add_metric(values, status.restarts)
            ready.add_metric(values, 1.0 if status.state == "ready" else 0.0)
            if status.started_at is not None:
                uptime.add_metric(values, max(0.0, now - status.started_at))
            if status.pid is None:
                continue
            try:
                process = psutil.Process(status.pid)
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # gone between the listing and now
            cpu.add_metric(values, times.user + times.system)
            memory.add_metric(values, rss)
        yield from (cpu, memory, restarts, uptime, ready)


class FleetCollector(Collector):
    """Control-plane metrics: apps by stage, SLO budgets and burn rates, firing alerts."""

    def __init__(
        self,
        stages: Callable[[], dict[str, int]],
        slos: SloSource,
        alerts: Callable[[], Sequence[FiringAlert]],
    ) -> None:
        self._stages = stages
        self._slos = slos
        self._alerts = alerts

    def collect(self) -> Iterator[Any]:
        apps = GaugeMetricFamily(
            "courtyard_apps", "Apps in the catalog by stage.", labels=["stage"]
        )
        for stage, count in sorted(self._stages().items()):
            apps.add_metric([stage], count)
        budget = GaugeMetricFamily(
            "courtyard_slo_error_budget_remaining",
            "Share of the SLO's error budget left over its window (below 0: overspent).",
            labels=["app", "slo"],
        )
        burn = GaugeMetricFamily(
            "courtyard_slo_burn_rate",
            "How fast the error budget burns (1 = exactly the budget over the window).",
            labels=["app", "slo", "window"],
        )
        for spec in self._slos.slos():
            status = self._slos.status(spec)
            budget.add_metric([spec.app, spec.name], status.budget_remaining)
            for window in BURN_WINDOWS:
                burn.add_metric([spec.app, spec.name, window], status.burn[window])
        firing = GaugeMetricFamily(
            "courtyard_alerts_firing", "SLO alerts firing now.", labels=["app", "severity"]
        )
        counts: dict[tuple[str, str], int] = {}
        for alert in self._alerts():
            counts[alert.app, alert.severity] = counts.get((alert.app, alert.severity), 0) + 1
        for (app, severity), count in sorted(counts.items()):
            firing.add_metric([app, severity], count)
        yield from (apps, budget, burn, firing)


def admin_app(
    gateway_metrics: Callable[[], str], collectors: Iterable[Collector] = ()
) -> Starlette:
    """``/metrics`` (gateway metrics summed over workers, then the collectors', then process
    metrics) and ``/healthz``."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)

    async def metrics(_: Request) -> Response:
        body = gateway_metrics() + generate_latest(registry).decode()
        body += generate_latest(REGISTRY).decode()
        return PlainTextResponse(body, media_type=PROMETHEUS_TEXT)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
