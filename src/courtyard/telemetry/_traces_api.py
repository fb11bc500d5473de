"""``/api/v1/traces`` (recent traces for people) and ``/internal/traces`` (the apps' own spans,
reported through the mesh with the caller's identity assertion)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from courtyard.contracts import (
    DEFAULT_TRUST_DOMAIN,
    IDENTITY_HEADER,
    TRACES_PATH,
    SpanRecord,
    app_of_spiffe_id,
)
from courtyard.core import problem
from courtyard.telemetry._traces import TraceStore

PROBLEM_JSON = "application/problem+json"  # RFC 9457 §3
MAX_REPORT_BYTES = 1024 * 1024
MAX_SPANS = 1000
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_KINDS = ("server", "client", "internal")


class AssertionVerifier(Protocol):
    """Checks a ``Courtyard-Identity`` assertion; its claims, or ValueError saying why not."""

    def verify(self, token: str) -> dict[str, Any]: ...


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        dict(problem(status, title, detail)), status_code=status, media_type=PROBLEM_JSON
    )


def traces_router(
    store: TraceStore,
    verifier: AssertionVerifier,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    on_spans: Callable[[list[SpanRecord]], None] | None = None,
) -> APIRouter:
    api = APIRouter(tags=["traces"])

    @api.get("/api/v1/traces", summary="Recent traces, newest first (or slowest with slow)")
    async def traces(
        app: str | None = None,
        slow: bool = False,
        errors: bool = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> list[dict[str, Any]]:
        found = store.traces(app, slow=slow, errors=errors, limit=limit)
        return [summary.document() for summary in found]

    @api.get("/api/v1/traces/{trace_id}", summary="Every span of one trace")
    async def trace(trace_id: str) -> Any:
        if not _TRACE_ID.fullmatch(trace_id):
            return _problem(400, "Bad trace id", "a trace id is 32 lower-case hex digits")
        spans = store.trace(trace_id)
        if spans is None:
            return _problem(404, "No such trace", f"no recent trace {trace_id} is kept")
        return {"traceId": trace_id, "spans": spans}

    @api.post(TRACES_PATH, status_code=202, include_in_schema=False)
    async def report(request: Request) -> Any:
        token = request.headers.get(IDENTITY_HEADER, "")
        if not token:
            return _problem(401, "Not authenticated", "report spans through the mesh")
        try:
            claims = verifier.verify(token)
        except ValueError as exc:
            return _problem(401, "Not authenticated", f"invalid identity assertion: {exc}")
        act = claims.get("act")
        actor = act.get("sub") if isinstance(act, dict) else None
        app = app_of_spiffe_id(actor, trust_domain) if isinstance(actor, str) else None
        if app is None:
            return _problem(403, "Forbidden", "only an app's workload may report spans")
        body = await request.body()
        if len(body) > MAX_REPORT_BYTES:
            return _problem(413, "Report too large", f"at most {MAX_REPORT_BYTES} bytes")
        try:
            document = json.loads(body)
            raw = document["spans"]
            if not isinstance(raw, list) or len(raw) > MAX_SPANS:
                raise ValueError(f"spans must be a list of at most {MAX_SPANS}")
            spans = [span_from(item, app) for item in raw]
        except (ValueError, KeyError, TypeError) as exc:
            return _problem(400, "Bad span report", str(exc)[:300])
        store.add(spans)
        if on_spans is not None:
            on_spans(spans)
        return JSONResponse({"accepted": len(spans)}, status_code=202)

    return api


def span_from(item: Any, app: str) -> SpanRecord:
    """One reported span, checked; its service is the reporting app whatever it claims (an
    app cannot write spans in another's name)."""
    if not isinstance(item, dict):
        raise ValueError("each span is an object")
    trace_id, span_id, parent = item.get("trace_id"), item.get("span_id"), item.get("parent_id")
    if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
        raise ValueError("trace_id must be 32 lower-case hex digits")
    if not isinstance(span_id, str) or not _SPAN_ID.fullmatch(span_id):
        raise ValueError("span_id must be 16 lower-case hex digits")
    if parent is not None and (not isinstance(parent, str) or not _SPAN_ID.fullmatch(parent)):
        raise ValueError("parent_id must be 16 lower-case hex digits or null")
    name = item.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ValueError("name must be a string of 1 to 200 characters")
    start, duration, status = item.get("start"), item.get("duration"), item.get("status", 0)
    for field, value in (("start", start), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{field} must be a number")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{field} must be a finite number >= 0")
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 999:
        raise ValueError("status must be an HTTP status or 0")
    kind = item.get("kind", "server")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}")
    attributes: dict[str, str | int | float | bool] = {}
    raw = item.get("attributes") or {}
    if not isinstance(raw, dict) or len(raw) > 32:
        raise ValueError("attributes must be an object of at most 32 members")
    for key, value in raw.items():
        if isinstance(value, str):
            attributes[str(key)[:100]] = value[:500]
        elif isinstance(value, int | float | bool):
            attributes[str(key)[:100]] = value
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent,
        "name": name,
        "service": app,
        "kind": kind,
        "start": float(start),  # type: ignore[arg-type]
        "duration": float(duration),  # type: ignore[arg-type]
        "status": status,
        "error": bool(item.get("error", status >= 500)),
        "attributes": attributes,
    }
