"""``/api/v1/health``: the fleet at a glance — every app's stage, instances, golden signals,
error budget left and firing alerts (what ``courtyard status`` and the portal show)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import APIRouter

from courtyard.core import Clock
from courtyard.telemetry import Telemetry

SIGNAL_WINDOW = 300.0  # seconds: request rate, error ratio and p99 over the last 5 minutes


class FiringAlerts(Protocol):
    def alerts(self, include_resolved: bool = False) -> list[Any]: ...


def health_document(
    apps: list[dict[str, Any]], telemetry: Telemetry, alerts: FiringAlerts | None, now: float
) -> dict[str, Any]:
    firing: dict[str, list[str]] = {}
    for alert in alerts.alerts() if alerts is not None else []:
        firing.setdefault(alert.app, []).append(alert.fingerprint)
    rows = []
    for app in apps:
        name = app["name"]
        signals = telemetry.signals(name, SIGNAL_WINDOW)
        slos: list[dict[str, Any]] = []
        budgets: list[float] = []
        for spec in telemetry.slos(name):
            status = telemetry.status(spec)
            slos.append(
                {
                    "name": spec.name,
                    "objective": round(spec.objective * 100, 6),
                    "sli": status.sli,
                    "budgetRemaining": status.budget_remaining,
                }
            )
            budgets.append(status.budget_remaining)
        rows.append(
            {
                "name": name,
                "stage": app.get("stage"),
                "phase": app.get("phase"),
                "ready": app.get("readyReplicas", 0),
                "desired": app.get("desiredReplicas", 0),
                "revision": app.get("servingRevision"),
                "requestRate": signals.rate,
                "errorRatio": signals.error_ratio,
                "p99Ms": round(signals.p99 * 1000, 3) if signals.p99 is not None else None,
                "slos": slos,
                "budgetRemaining": min(budgets, default=None),
                "alerts": sorted(firing.get(name, [])),
            }
        )
    return {"generatedAt": now, "windowSeconds": SIGNAL_WINDOW, "apps": rows}


def health_router(
    apps: Callable[[], Awaitable[list[dict[str, Any]]]],
    telemetry: Telemetry,
    alerts: Callable[[], FiringAlerts | None],
    clock: Clock,
) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/api/v1/health", summary="Every app's stage, instances, signals and error budget")
    async def health() -> dict[str, Any]:
        return health_document(await apps(), telemetry, alerts(), clock.time())

    return api
