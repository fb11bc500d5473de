"""Receiving events: the platform POSTs each event to the subscriber's handler path through the
mesh, as a CloudEvents 1.0 JSON document (structured mode, CloudEvents HTTP binding §3.2).

The handler apps here check that the platform's event bus is the caller (the verified
assertion's ``act``) before anything else, parse the envelope and call the author's function:
2xx once it returned, 500 when it raised, so the bus delivers the event again later
(at-least-once: a function should tolerate seeing the same ``id`` twice).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, overload

import anyio.to_thread

from courtyard.contracts import DEFAULT_TRUST_DOMAIN, spiffe_id
from courtyard.sdk._asgi import Receive, Scope, Send, scope_identity
from courtyard.sdk._identity import Identity
from courtyard.sdk._mesh import MeshError
from courtyard.sdk._wsgi import ENVIRON_KEY, Environ, StartResponse

EVENTS_APP = "courtyard"  # the platform's own workload, which delivers every event
DEFAULT_EVENTS_IDENTITY = spiffe_id(DEFAULT_TRUST_DOMAIN, EVENTS_APP)
CLOUDEVENTS_JSON = "application/cloudevents+json"  # CloudEvents JSON format §4
MAX_EVENT_BYTES = 1024 * 1024
# CloudEvents 1.0 §3.1 context attributes; anything else in the envelope is an extension.
_CONTEXT = frozenset(
    (
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
    )
)

log = logging.getLogger("courtyard.sdk.events")

EventFunction = Callable[["CloudEvent"], Any]  # may be async; its return value is ignored


class InvalidEvent(MeshError):
    """A pushed request that is not a CloudEvents 1.0 JSON document (``.detail`` says why)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"not a CloudEvents 1.0 event: {detail}", status=400, detail=detail)


@dataclass(frozen=True)
class CloudEvent:
    """One event as the platform delivers it (CloudEvents 1.0 §3).

    ``type`` is the topic; ``source`` is the publisher's SPIFFE ID; ``time`` is when the
    platform accepted it; ``data`` is what the publisher sent (parsed JSON). ``extensions``
    holds any other attribute of the envelope.
    """

    id: str
    source: str
    type: str
    time: datetime | None = None
    data: Any = None
    subject: str | None = None
    datacontenttype: str | None = None
    specversion: str = "1.0"
    extensions: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    @property
    def topic(self) -> str:
        """The topic the event was published to (its ``type``)."""
        return self.type

    @property
    def publisher(self) -> str | None:
        """The publishing app's name, read from ``source`` (``spiffe://<domain>/app/<name>``)."""
        head, marker, name = self.source.rpartition("/app/")
        if not marker or not head.startswith("spiffe://") or not name or "/" in name:
            return None
        return name

    @classmethod
    def from_document(cls, document: Any) -> CloudEvent:
        """The event a parsed CloudEvents JSON document holds; raises InvalidEvent."""
        if not isinstance(document, dict):
            raise InvalidEvent("the body is not a JSON object")
        if document.get("specversion") != "1.0":
            raise InvalidEvent("specversion is not '1.0'")
        for name in ("id", "source", "type"):
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidEvent(f"{name} is missing or not a string")
        for name in ("subject", "datacontenttype", "time"):
            if name in document and not isinstance(document[name], str):
                raise InvalidEvent(f"{name} is not a string")
        return cls(
            id=document["id"],
            source=document["source"],
            type=document["type"],
            time=_time(document.get("time")),
            data=document.get("data"),
            subject=document.get("subject"),
            datacontenttype=document.get("datacontenttype"),
            extensions=MappingProxyType(
                {key: value for key, value in document.items() if key not in _CONTEXT}
            ),
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> CloudEvent:
        """Parse a CloudEvents JSON body; raises InvalidEvent."""
        try:
            document = json.loads(body)
        except ValueError:
            raise InvalidEvent("the body is not JSON") from None
        return cls.from_document(document)


def _time(value: str | None) -> datetime | None:
    """RFC 3339 timestamp (CloudEvents 1.0 §3.1.4 "Timestamp")."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("time is not an RFC 3339 timestamp") from None


def _refusal(identity: Identity | None, events_identity: str) -> tuple[int, str] | None:
    """Why a delivery must be refused before reading it, from its verified identity."""
    if identity is None:
        return 401, "no verified Courtyard-Identity (wrap the handler in IdentityMiddleware)"
    if identity.act != events_identity:
        return 403, "events are accepted only from the platform's event bus"
    return None


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _problem(status: int, title: str, detail: str) -> tuple[list[tuple[str, str]], bytes]:
    """An RFC 9457 problem document and its headers."""
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if status == 405:
        headers.append(("Allow", "POST"))
    return headers, body


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


class _DeliveryGate:
    """The checks both handler kinds make, in order, before reading a POSTed event."""

    def __init__(self, events_identity: str, max_body: int) -> None:
        self.events_identity = events_identity
        self.max_body = max_body

    def before_body(
        self, method: str, identity: Identity | None, content_type: str, length: int | None
    ) -> tuple[int, str] | None:
        if method != "POST":
            return 405, "events are delivered with POST"
        refused = _refusal(identity, self.events_identity)
        if refused is not None:
            return refused
        if _media_type(content_type) != CLOUDEVENTS_JSON:
            return 415, f"expected {CLOUDEVENTS_JSON} (CloudEvents structured mode)"
        if length is not None and length > self.max_body:
            return 413, f"an event may be at most {self.max_body} bytes"
        return None


class EventHandler:
    """An ASGI app receiving the events of one or more topics for ``function``.

    Mount it at the handler path of the manifest's ``subscribes`` entry, behind
    :class:`IdentityMiddleware` (which verifies the assertion). ``function`` gets a
    :class:`CloudEvent`, and may be async; a sync one runs in a worker thread.
    ``events_identity`` is the SPIFFE ID of the platform's event bus
    (``spiffe://<trust domain>/app/courtyard``).
    """

    def __init__(
        self,
        function: EventFunction,
        *,
        events_identity: str = DEFAULT_EVENTS_IDENTITY,
        max_body: int = MAX_EVENT_BYTES,
    ) -> None:
        self.function = function
        self._gate = _DeliveryGate(events_identity, max_body)
        self._is_async = inspect.iscoroutinefunction(function)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"an EventHandler serves HTTP, not {scope['type']}")
        headers = {
            bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        length = headers.get("content-length", "")
        refused = self._gate.before_body(
            scope["method"],
            scope_identity(scope),
            headers.get("content-type", ""),
            int(length) if length.isdigit() else None,
        )
        if refused is None:
            body = await _body(receive, self._gate.max_body)
            refused = (413, "the event is too large") if body is None else await self._run(body)
        if refused is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        status, detail = refused
        problem_headers, payload = _problem(status, _TITLES[status], detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in problem_headers],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _run(self, body: bytes) -> tuple[int, str] | None:
        try:
            event = CloudEvent.from_json(body)
        except InvalidEvent as exc:
            return 400, exc.detail
        try:
            if self._is_async:
                await self.function(event)
            else:
                result = await anyio.to_thread.run_sync(self.function, event)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            log.exception("the handler of event %s (%s) failed", event.id, event.type)
            return 500, f"the handler of event {event.id} failed"
        return None


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    """A standalone handler app has nothing to start or stop (ASGI lifespan protocol)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@overload
def event_handler(function: EventFunction, /) -> EventHandler: ...
@overload
def event_handler(
    *, events_identity: str = DEFAULT_EVENTS_IDENTITY, max_body: int = MAX_EVENT_BYTES
) -> Callable[[EventFunction], EventHandler]: ...
def event_handler(
    function: EventFunction | None = None,
    /,
    *,
    events_identity: str = DEFAULT_EVENTS_IDENTITY,
    max_body: int = MAX_EVENT_BYTES,
) -> EventHandler | Callable[[EventFunction], EventHandler]:
    """Decorator: turns ``function(event)`` into an :class:`EventHandler` ASGI app, used bare
    (``@event_handler``) or with options (``@event_handler(events_identity=...)``)."""

    def wrap(inner: EventFunction) -> EventHandler:
        return EventHandler(inner, events_identity=events_identity, max_body=max_body)

    return wrap(function) if function is not None else wrap


class EventWSGIHandler:
    """:class:`EventHandler` for WSGI apps, behind :class:`IdentityWSGIMiddleware`;
    ``function`` is called in the request's thread."""

    def __init__(
        self,
        function: Callable[[CloudEvent], object],
        *,
        events_identity: str = DEFAULT_EVENTS_IDENTITY,
        max_body: int = MAX_EVENT_BYTES,
    ) -> None:
        self.function = function
        self._gate = _DeliveryGate(events_identity, max_body)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        identity = environ.get(ENVIRON_KEY)
        length = str(environ.get("CONTENT_LENGTH") or "")
        refused = self._gate.before_body(
            str(environ.get("REQUEST_METHOD", "GET")),
            identity if isinstance(identity, Identity) else None,
            str(environ.get("CONTENT_TYPE", "")),
            int(length) if length.isdigit() else None,
        )
        if refused is None:
            refused = self._run(environ["wsgi.input"].read(int(length or 0)))
        if refused is None:
            start_response("204 No Content", [])
            return [b""]
        status, detail = refused
        headers, body = _problem(status, _TITLES[status], detail)
        start_response(f"{status} {_TITLES[status]}", headers)
        return [body]

    def _run(self, body: bytes) -> tuple[int, str] | None:
        try:
            event = CloudEvent.from_json(body)
        except InvalidEvent as exc:
            return 400, exc.detail
        try:
            self.function(event)
        except Exception:
            log.exception("the handler of event %s (%s) failed", event.id, event.type)
            return 500, f"the handler of event {event.id} failed"
        return None
