"""The mesh's part of the control plane's HTTP API: the publish endpoint the mesh forwards
events to (``/internal/events``), and the dead-letter admin API (``/api/v1/events``).

``/internal/events/<topic>`` is not behind the node's bearer-token guard: its caller is an app,
vouched for by the ``Courtyard-Identity`` assertion the mesh listener signed (``act.sub`` =
the publishing workload). Event errors become RFC 9457 problem documents in
:func:`problem_for` only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

# pydantic (hence FastAPI) needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import TypedDict

from courtyard.audit import Actor
from courtyard.contracts import IDENTITY_HEADER, app_of_spiffe_id
from courtyard.core import problem
from courtyard.iam import Principal
from courtyard.mesh._events import MAX_EVENT_BYTES, EventBus
from courtyard.mesh._events_errors import EventError, EventIdTaken, EventInvalid, PublishRefused
from courtyard.mesh._events_http import AssertionVerifier
from courtyard.mesh._events_store import EventDelivery

__all__ = ["EVENT_ID_HEADER", "events_router", "problem_for"]

PROBLEM_JSON = "application/problem+json"
EVENT_ID_HEADER = "ce-id"  # CloudEvents HTTP binding §3.1.3: the publisher's own event id


class DeadDocument(TypedDict):
    id: str
    topic: str
    publisher: str
    subscriber: str
    handler: str
    attempts: int
    lastError: str | None
    lastAttemptAt: float | None
    createdAt: float


class RedriveBody(TypedDict, total=False):
    ids: list[str]
    all: bool


def dead_document(item: EventDelivery) -> DeadDocument:
    delivery, event = item.delivery, item.event
    return {
        "id": event.id,
        "topic": event.topic,
        "publisher": event.publisher,
        "subscriber": delivery.subscriber,
        "handler": delivery.handler,
        "attempts": delivery.attempts,
        "lastError": delivery.last_error,
        "lastAttemptAt": delivery.last_attempt_at,
        "createdAt": event.created_at,
    }


def _problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    document = dict(problem(status, title, detail))
    return JSONResponse(document, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _admin(request: Request) -> Principal | JSONResponse:
    """The calling platform admin, or the 401/403 answer."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        return _problem(401, "Not authenticated", "this API needs a valid bearer token")
    if not principal.is_admin:
        return _problem(403, "Forbidden", "only platform admins may manage dead events")
    return principal


async def _body(request: Request) -> bytes | None:
    """The request body, or None past :data:`MAX_EVENT_BYTES` (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def events_router(bus: EventBus, verifier: AssertionVerifier) -> APIRouter:
    """The publish endpoint (for the mesh) and ``/api/v1/events`` (for platform admins)."""
    api = APIRouter(tags=["events"])
    trust_domain = bus.config.trust_domain

    @api.post("/internal/events/{topic}", status_code=202, include_in_schema=False)
    async def publish(request: Request, topic: str) -> Any:
        token = request.headers.get(IDENTITY_HEADER, "")
        if not token:
            return _problem(401, "Not authenticated", "publish through the mesh")
        try:
            claims = verifier.verify(token)
        except ValueError as exc:
            return _problem(401, "Not authenticated", f"invalid identity assertion: {exc}")
        act = claims.get("act")
        actor = act.get("sub") if isinstance(act, dict) else None
        publisher = app_of_spiffe_id(actor, trust_domain) if isinstance(actor, str) else None
        if publisher is None:
            return _problem(403, "Forbidden", "only an app's workload may publish events")
        body = await _body(request)
        if body is None:
            detail = f"an event is at most {MAX_EVENT_BYTES} bytes"
            return _problem(413, "Event too large", detail)
        try:
            event_id = await bus.publish(
                publisher,
                topic,
                body,
                request.headers.get("content-type", ""),
                event_id=request.headers.get(EVENT_ID_HEADER),
            )
        except EventError as exc:
            status, document = problem_for(exc)
            return JSONResponse(document, status_code=status, media_type=PROBLEM_JSON)
        return JSONResponse({"id": event_id}, status_code=202)

    @api.get("/api/v1/events/dead", summary="Deliveries that gave up (dead letters)")
    async def dead(
        request: Request,
        topic: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    ) -> Any:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        return [dead_document(item) for item in await bus.dead(topic or None, limit)]

    @api.post("/api/v1/events/redrive", summary="Deliver dead events again")
    async def redrive(request: Request, body: RedriveBody) -> Any:
        caller = _admin(request)
        if isinstance(caller, JSONResponse):
            return caller
        ids = body.get("ids")
        everything = body.get("all", False)
        if everything == (ids is not None):
            return _problem(422, "Invalid request", 'give either "ids" or "all": true')
        if ids is not None and not ids:
            return _problem(422, "Invalid request", '"ids" is empty')
        actor = getattr(request.state, "actor", None)
        if not isinstance(actor, Actor):
            actor = Actor(kind=caller.kind, id=caller.id, auth=caller.auth)
        count = await bus.redrive(
            actor, None if everything else ids, request_id=request.headers.get("x-request-id")
        )
        return {"redriven": count}

    return api


def problem_for(error: EventError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and RFC 9457 problem document for an event error."""
    detail = str(error)
    match error:
        case PublishRefused():
            return 403, dict(problem(403, "Publish refused", detail, topic=error.topic))
        case EventInvalid():
            title = {413: "Event too large", 415: "Unsupported event type"}.get(
                error.status, "Invalid event"
            )
            return error.status, dict(problem(error.status, title, detail))
        case EventIdTaken():
            return 409, dict(problem(409, "Event id taken", detail, id=error.event_id))
        case _:
            return 500, dict(problem(500, "Event bus error", detail))
