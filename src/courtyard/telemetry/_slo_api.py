"""``/api/v1/apps/{name}/slos``: each SLO's budget and burn rates as of now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from courtyard.core import problem
from courtyard.telemetry._export import openslo_documents, prometheus_rules, sloth_document
from courtyard.telemetry._service import Telemetry
from courtyard.telemetry._slo import SloStatus, window_label

PROBLEM_JSON = "application/problem+json"  # RFC 9457 §3


def status_document(status: SloStatus) -> dict[str, Any]:
    spec = status.spec
    return {
        "name": spec.name,
        "indicator": spec.indicator,
        "objective": round(spec.objective * 100, 6),
        "window": window_label(spec.window),
        "thresholdMs": round(spec.threshold * 1000, 3) if spec.threshold is not None else None,
        "total": status.total,
        "bad": status.bad,
        "sli": status.sli,
        "budgetRemaining": status.budget_remaining,
        "burnRates": status.burn,
    }


def slo_router(telemetry: Telemetry, app_exists: Callable[[str], Awaitable[bool]]) -> APIRouter:
    api = APIRouter(tags=["slos"])

    @api.get("/api/v1/apps/{name}/slos", summary="The app's SLOs: budget left, burn rates")
    async def slos(name: str) -> Any:
        if not await app_exists(name):
            document = dict(problem(404, "App not found", f"no app named {name}"))
            return JSONResponse(document, status_code=404, media_type=PROBLEM_JSON)
        return [status_document(telemetry.status(spec)) for spec in telemetry.slos(name)]

    @api.get(
        "/api/v1/apps/{name}/slos/export/{form}",
        summary="The app's SLOs as OpenSLO, a Sloth spec or Prometheus rules",
    )
    async def export(name: str, form: str) -> Any:
        if not await app_exists(name):
            document = dict(problem(404, "App not found", f"no app named {name}"))
            return JSONResponse(document, status_code=404, media_type=PROBLEM_JSON)
        specs = telemetry.slos(name)
        if form == "openslo":
            return openslo_documents(specs)
        if form == "sloth":
            return sloth_document(name, specs)
        if form == "prometheus":
            return prometheus_rules(name, specs)
        detail = f"{form!r}: expected openslo, sloth or prometheus"
        document = dict(problem(400, "Unknown export format", detail))
        return JSONResponse(document, status_code=400, media_type=PROBLEM_JSON)

    return api
