"""``/api/v1/apps/{name}/slos``: each SLO's budget and burn rates as of now, and the SLOs as
OpenSLO, a Sloth spec or Prometheus rules for cluster use (YAML)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from courtyard.core import problem
from courtyard.telemetry._export import openslo_document, prometheus_rules, sloth_document
from courtyard.telemetry._series import rounded_threshold
from courtyard.telemetry._service import Telemetry
from courtyard.telemetry._slo import SloStatus, window_label

PROBLEM_JSON = "application/problem+json"  # RFC 9457 §3
YAML = "application/yaml"  # RFC 9512
FORMATS = ("openslo", "sloth", "prometheus")


def status_document(status: SloStatus) -> dict[str, Any]:
    """One SLO's status as the API shows it (objective in percent, window as "28d")."""
    spec = status.spec
    threshold = spec.threshold
    return {
        "name": spec.name,
        "indicator": spec.indicator,
        "objective": round(spec.objective * 100, 6),
        "window": window_label(spec.window),
        "threshold": threshold,  # seconds, as declared; counted at ``thresholdCounted``
        "thresholdCounted": rounded_threshold(threshold) if threshold is not None else None,
        "thresholdMs": round(threshold * 1000, 3) if threshold is not None else None,
        "total": status.total,
        "bad": status.bad,
        "sli": status.sli,
        "budgetRemaining": status.budget_remaining,
        "burnRates": status.burn,
    }


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        dict(problem(status, title, detail)), status_code=status, media_type=PROBLEM_JSON
    )


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "yaml" not in accept


def slo_router(telemetry: Telemetry, app_exists: Callable[[str], Awaitable[bool]]) -> APIRouter:
    """The SLO routes; ``app_exists`` tells a known app (404 otherwise). Any signed-in caller
    may read them (the node's middleware checks that)."""
    api = APIRouter(tags=["slos"])

    def document(name: str, form: str) -> Any:
        specs = telemetry.slos(name)
        if form == "openslo":
            return openslo_document(specs)
        if form == "sloth":
            return sloth_document(name, specs)
        return prometheus_rules(name, specs)

    @api.get("/api/v1/apps/{name}/slos", summary="The app's SLOs: budget left, burn rates")
    async def slos(name: str) -> Any:
        if not await app_exists(name):
            return _problem(404, "App not found", f"no app named {name}")
        return [status_document(telemetry.status(spec)) for spec in telemetry.slos(name)]

    @api.get(
        "/api/v1/apps/{name}/slos/export",
        summary="The app's SLOs as OpenSLO, a Sloth spec or Prometheus rules (YAML)",
        responses={200: {"content": {YAML: {}}}},
    )
    async def export(name: str, request: Request, format: str = "openslo") -> Any:
        if format not in FORMATS:
            detail = f"format {format!r}: expected openslo, sloth or prometheus"
            return _problem(400, "Unknown export format", detail)
        if not await app_exists(name):
            return _problem(404, "App not found", f"no app named {name}")
        content = document(name, format)
        if _wants_json(request):
            return content
        if isinstance(content, list):  # OpenSLO: one YAML document per SLO
            text = yaml.safe_dump_all(content, sort_keys=False) if content else ""
        else:
            text = yaml.safe_dump(content, sort_keys=False)
        return Response(text, media_type=YAML)

    return api
