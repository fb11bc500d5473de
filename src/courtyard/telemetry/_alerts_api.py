"""The alerts part of the control plane's HTTP API: alerts (read by any signed-in caller) and
silences (changed by platform admins; the node's middleware enforces that before a request
gets here). Bad input is answered with an RFC 9457 problem document.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from courtyard.audit import Actor
from courtyard.core import problem
from courtyard.telemetry._alerts import SEVERITIES, AlertEngine

__all__ = ["MAX_SILENCE", "alerts_router", "parse_duration"]

PROBLEM_JSON = "application/problem+json"
MAX_SILENCE = 90 * 86400.0  # seconds: the longest silence (an SLO window at most)
MAX_COMMENT = 1024
MAX_BODY = 16 * 1024

_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 §2.1 label
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_duration(value: object) -> float:
    """Seconds from ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a number of seconds;
    ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "2h" or seconds, got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ValueError(f'expected a duration like "2h", "30m" or "1d", got {value!r}')
    if not 0 < seconds <= MAX_SILENCE:
        raise ValueError(f"a silence lasts more than 0 seconds and at most 90 days, not {value!r}")
    return seconds


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        dict(problem(status, title, detail)), status_code=status, media_type=PROBLEM_JSON
    )


def _invalid(detail: str) -> JSONResponse:
    return _problem(400, "Invalid silence", detail)


def _caller(request: Request) -> Actor | JSONResponse:
    """Who is changing silences, as the node's middleware recorded it, or the 401/403."""
    actor = getattr(request.state, "actor", None)
    if not isinstance(actor, Actor):
        return _problem(401, "Not authenticated", "this API needs a valid bearer token")
    principal = getattr(request.state, "principal", None)
    if principal is not None and getattr(principal, "is_admin", False) is not True:
        return _problem(403, "Forbidden", "only platform admins may change silences")
    return actor


def _label(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise ValueError(f"'{name}' must be an app or SLO name (a DNS label), got {value!r}")
    return value


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ValueError(f"the body is larger than {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ValueError(f"the body is larger than {MAX_BODY} bytes")
    try:
        document = json.loads(raw)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("the body must be a JSON object")
    return document


def alerts_router(engine: AlertEngine) -> APIRouter:
    """``/api/v1/alerts`` and ``/api/v1/silences``."""
    api = APIRouter(tags=["alerts"])

    @api.get("/api/v1/alerts", summary="Firing alerts (and recently resolved ones with all=true)")
    async def alerts(include: Annotated[bool, Query(alias="all")] = False) -> Any:
        return [alert.document() for alert in engine.alerts(include_resolved=include)]

    @api.get("/api/v1/silences", summary="Silences in force")
    async def silences() -> Any:
        return [silence.document() for silence in engine.silences()]

    @api.post("/api/v1/silences", status_code=201, summary="Silence an app's alerts for a while")
    async def create(request: Request) -> Any:
        caller = _caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        try:
            body = await _json_body(request)
            app = _label(body, "app")
            slo = _label(body, "slo") if body.get("slo") is not None else None
            severity = body.get("severity")
            if severity is not None and severity not in SEVERITIES:
                raise ValueError(f"'severity' must be page or ticket, got {severity!r}")
            if "duration" not in body:
                raise ValueError("'duration' is required, e.g. \"2h\"")
            seconds = parse_duration(body["duration"])
            comment = body.get("comment")
            if not isinstance(comment, str) or not comment.strip():
                raise ValueError("'comment' is required: say why the alerts are silenced")
            if len(comment) > MAX_COMMENT or _CONTROL.search(comment):
                raise ValueError(f"'comment' is one line of at most {MAX_COMMENT} characters")
        except ValueError as exc:
            return _invalid(str(exc))
        silence = await engine.silence(
            app,
            slo=slo,
            severity=severity,
            until=engine.clock.time() + seconds,
            comment=comment.strip(),
            created_by=caller.id,
            actor=caller,
        )
        return JSONResponse(silence.document(), status_code=201)

    @api.delete(
        "/api/v1/silences/{silence_id}",
        status_code=204,
        response_class=Response,
        summary="End a silence now",
    )
    async def expire(request: Request, silence_id: str) -> Response:
        caller = _caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        if await engine.expire(silence_id, actor=caller) is None:
            return _problem(404, "Silence not found", f"no silence has the id {silence_id!r}")
        return Response(status_code=204)

    return api
