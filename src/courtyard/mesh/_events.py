"""The durable event bus: apps publish through the mesh, the control plane stores each event
with one delivery per subscriber, and pushes it to every subscriber until one answer is 2xx.

Delivery is at-least-once: a delivery is marked delivered only after its 2xx, a failed one is
retried with exponential backoff and jitter, and after ``max_attempts`` it is dead until an
operator redrives it. Events are CloudEvents 1.0 in the JSON format
(github.com/cloudevents/spec, ``cloudevents/spec.md`` and ``formats/json-format.md``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from courtyard.audit import Actor, AuditEvent
from courtyard.contracts import (
    DEFAULT_TRUST_DOMAIN,
    MeshPolicy,
    publish_refusal,
    spiffe_id,
    subscribers_of,
)
from courtyard.core import Clock, SystemClock
from courtyard.mesh._events_errors import EventIdTaken, EventInvalid, PublishRefused
from courtyard.mesh._events_store import EventDelivery, EventStore, StoredEvent

CLOUDEVENTS_JSON = "application/cloudevents+json"  # CloudEvents JSON format §4 (structured)
EVENTS_APP = "courtyard"  # the control plane's own workload: it delivers every event
MAX_EVENT_BYTES = 1024 * 1024  # largest publish body accepted
# CloudEvents §3.1.1: any non-empty string; we keep ids printable and short enough to show.
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,128}")
# CloudEvents §3.1 attribute naming: lower-case letters and digits, at most 20 (extensions).
_EXTENSION = re.compile(r"[a-z0-9]{1,20}")
# Attributes the platform sets (or refuses) whatever the publisher sent.
_PLATFORM_SET = frozenset(
    ("specversion", "id", "source", "type", "time", "datacontenttype", "data", "data_base64")
)
_ERROR_TEXT = 300  # characters of an exception kept as a delivery's error

log = logging.getLogger("courtyard.mesh.events")

PolicySource = Callable[[], Awaitable[dict[str, MeshPolicy]]]


class DeliverySender(Protocol):
    """Pushes one CloudEvent to one subscriber's handler (through the mesh, for real)."""

    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        """POST ``cloudevent`` (JSON text) to ``handler`` of ``subscriber``; the HTTP status.

        Raises any exception when no answer came (the bus counts a failed attempt).
        """
        ...


class AuditSink(Protocol):
    """Where the bus reports refusals, dead letters and redrives (courtyard.audit.AuditLog)."""

    async def record(self, event: AuditEvent) -> object: ...


@dataclass(frozen=True)
class EventBusConfig:
    """How hard the bus tries: retries, their spacing, and how many sends run at once."""

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    max_attempts: int = 8  # sends before a delivery is dead
    base_delay: float = 1.0  # seconds before the second send
    max_delay: float = 300.0  # longest wait between two sends
    concurrency: int = 16  # sends under way at once
    lease: float = 60.0  # a claimed delivery is not sent again before this (> send timeout)
    idle_poll: float = 5.0  # longest wait before looking for due deliveries again

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease <= 0 or self.idle_poll <= 0:
            raise ValueError("lease and idle_poll must be positive")


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after failed send number ``attempt`` (1 = the first). Pure.

    Capped exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential
    Backoff And Jitter", 2015): half of ``min(cap, base * 2**(attempt - 1))`` is always
    waited, ``jitter`` (0..1) of the other half is added, so retries of many deliveries spread
    out but never come back at once.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    jitter = min(1.0, max(0.0, jitter))
    ceiling = cap if attempt > 64 else min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + ceiling / 2 * jitter


def rfc3339(moment: float) -> str:
    """``moment`` (epoch seconds) as an RFC 3339 UTC timestamp with milliseconds."""
    text = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def build_cloudevent(
    *,
    trust_domain: str,
    publisher: str,
    topic: str,
    body: bytes,
    content_type: str,
    event_id: str | None,
    now: float,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> dict[str, Any]:
    """The CloudEvent (JSON format) the platform stores for a publish. Pure; raises
    EventInvalid.

    ``body`` is the event's data as JSON (``application/json``), or a whole CloudEvent
    (``application/cloudevents+json``, structured mode §3.1) whose ``id``, ``subject``, data
    and extensions are kept. Either way the platform sets ``source`` (the publisher's SPIFFE
    ID), ``type`` (the topic) and ``time`` (when it was accepted): a publisher cannot speak for
    another. The id is the publisher's (``event_id``, from the ``ce-id`` header) or a UUID.
    """
    media_type = _media_type(content_type)
    extra: dict[str, Any] = {}
    if media_type == CLOUDEVENTS_JSON:
        document = _json(body)
        if not isinstance(document, dict):
            raise EventInvalid("a structured CloudEvent must be a JSON object")
        extra, data, given = _structured(document)
        if given is not None and event_id is not None and given != event_id:
            raise EventInvalid("the ce-id header and the event's id differ")
        event_id = event_id if event_id is not None else given
    elif _is_json(media_type):
        data = _json(body)
    else:
        raise EventInvalid(
            f"events are JSON: send application/json or {CLOUDEVENTS_JSON}, not "
            f"{media_type or 'no content type'}",
            status=415,
        )
    if event_id is None:
        event_id = new_id()
    elif not _EVENT_ID.fullmatch(event_id):
        raise EventInvalid("an event id is 1 to 128 printable ASCII characters, no spaces")
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": spiffe_id(trust_domain, publisher),
        "type": topic,
        "time": rfc3339(now),
        "datacontenttype": "application/json",
        **extra,
        "data": data,
    }


def _json(body: bytes) -> Any:
    if not body.strip():
        raise EventInvalid("the body is empty; an event's data is JSON")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise EventInvalid("the body is not JSON") from None


def _structured(document: dict[str, Any]) -> tuple[dict[str, Any], Any, str | None]:
    """(kept attributes, data, the publisher's id) of a structured-mode CloudEvent."""
    if document.get("specversion", "1.0") != "1.0":
        raise EventInvalid("only CloudEvents specversion 1.0 is accepted")
    if "data_base64" in document:
        raise EventInvalid("binary data (data_base64) is not accepted; events are JSON", 415)
    given_type = document.get("datacontenttype")
    if given_type is not None and not (
        isinstance(given_type, str) and _is_json(_media_type(given_type))
    ):
        raise EventInvalid("datacontenttype must be JSON", status=415)
    given_id = document.get("id")
    if given_id is not None and not isinstance(given_id, str):
        raise EventInvalid("the event's id must be a string")
    kept: dict[str, Any] = {}
    for name, value in document.items():
        if name in _PLATFORM_SET:
            continue
        if not _EXTENSION.fullmatch(name):
            raise EventInvalid(f"{name!r} is not a CloudEvents attribute name (a-z, 0-9, ≤ 20)")
        if not isinstance(value, str | int | bool):
            raise EventInvalid(f"attribute {name!r} must be a string, integer or boolean")
        kept[name] = value
    return kept, document.get("data"), given_id or None


class EventBus:
    """Stores published events durably and pushes each to its subscribers until they take it.

    Run :meth:`run` as a task for the node's lifetime; :meth:`publish` may be called from any
    request handler meanwhile.
    """

    def __init__(
        self,
        store: EventStore,
        policies: PolicySource,
        sender: DeliverySender,
        *,
        audit: AuditSink | None = None,
        config: EventBusConfig | None = None,
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._policies = policies
        self._sender = sender
        self._audit = audit
        self._config = config if config is not None else EventBusConfig()
        self._clock = clock if clock is not None else SystemClock()
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._system = Actor(kind="system", id=EVENTS_APP)

    @property
    def config(self) -> EventBusConfig:
        return self._config

    @property
    def identity(self) -> str:
        """The SPIFFE ID the bus delivers as (what subscribers check in ``act.sub``)."""
        return spiffe_id(self._config.trust_domain, EVENTS_APP)

    async def publish(
        self,
        publisher: str,
        topic: str,
        body: bytes,
        content_type: str,
        *,
        event_id: str | None = None,
    ) -> str:
        """Store an event from ``publisher`` and a delivery per current subscriber of
        ``topic`` in one durable step; the event's id once committed.

        Raises PublishRefused when the catalog does not let ``publisher`` publish ``topic``
        (audited), EventInvalid for a body that is not an event, EventIdTaken when another
        publisher or topic used the id. Publishing an id again stores nothing new.
        """
        policies = await self._policies()
        refusal = publish_refusal(publisher, policies.get(publisher), topic)
        if refusal is not None:
            await self._record(
                AuditEvent(
                    actor=Actor(
                        kind="service",
                        id=spiffe_id(self._config.trust_domain, publisher),
                        auth="workload",
                    ),
                    action="access.deny",
                    target=f"event-topic:{topic}"[:200],
                    outcome="denied",
                    reason=refusal,
                    details={"publisher": publisher},
                )
            )
            raise PublishRefused(publisher, topic, refusal)
        now = self._clock.time()
        document = build_cloudevent(
            trust_domain=self._config.trust_domain,
            publisher=publisher,
            topic=topic,
            body=body,
            content_type=content_type,
            event_id=event_id,
            now=now,
        )
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        event = StoredEvent(document["id"], topic, publisher, text, now)
        subscribers = subscribers_of(topic, policies)
        stored, created = await asyncio.to_thread(self._store.publish, event, subscribers, now)
        if not created and (stored.publisher, stored.topic) != (publisher, topic):
            raise EventIdTaken(stored.id)
        if created and subscribers:
            self._wake.set()
        return stored.id

    async def dead(self, topic: str | None = None, limit: int = 1000) -> list[EventDelivery]:
        """Dead deliveries (of ``topic`` only, if given), oldest event first."""
        return await asyncio.to_thread(self._store.dead, topic, limit)

    async def redrive(
        self, actor: Actor, event_ids: Sequence[str] | None, *, request_id: str | None = None
    ) -> int:
        """Make the dead deliveries of ``event_ids`` (None: all of them) pending again with a
        fresh count of attempts; how many. Audited as ``events.redrive``."""
        count = await asyncio.to_thread(self._store.redrive, event_ids, self._clock.time())
        await self._record(
            AuditEvent(
                actor=actor,
                action="events.redrive",
                target="events:all" if event_ids is None else "events",
                outcome="success",
                request_id=request_id,
                details={
                    "all": event_ids is None,
                    "events": list(event_ids or ())[:50],
                    "redriven": count,
                },
            )
        )
        if count:
            self._wake.set()
        return count

    async def deliver_due(self) -> int:
        """Send every delivery due now and wait for each outcome; how many sends were made.

        :meth:`run` does this continuously; this one pass is for tests and tools.
        """
        total = 0
        while True:
            claimed, policies = await self._claim(self._config.concurrency)
            if not claimed:
                return total
            await asyncio.gather(*(self._deliver(item, policies) for item in claimed))
            total += len(claimed)

    async def run(self) -> None:
        """Deliver until cancelled: claim due deliveries while fewer than ``concurrency`` sends
        are under way, and sleep until the next one is due, an event is published, or a send
        ends. Cancelling leaves unfinished sends claimed; they are retried after the lease."""
        inflight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            self._wake.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("event delivery failed", exc_info=task.exception())

        try:
            while True:
                self._wake.clear()
                free = self._config.concurrency - len(inflight)
                if free <= 0:
                    await self._wake.wait()
                    continue
                try:
                    claimed, policies = await self._claim(free)
                    for item in claimed:
                        task = asyncio.create_task(self._deliver(item, policies))
                        inflight.add(task)
                        task.add_done_callback(finished)
                    if len(claimed) == free:
                        continue  # more may be due
                    wait = await self._until_due()
                except Exception:  # the database or catalog is away: try again later
                    log.exception("cannot claim event deliveries")
                    wait = self._config.idle_poll
                await self._idle(wait)
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def _claim(self, limit: int) -> tuple[list[EventDelivery], dict[str, MeshPolicy]]:
        claimed = await asyncio.to_thread(
            self._store.claim_due, self._clock.time(), limit, self._config.lease
        )
        return claimed, (await self._policies() if claimed else {})

    async def _until_due(self) -> float:
        due = await asyncio.to_thread(self._store.next_due)
        if due is None:
            return self._config.idle_poll
        return min(self._config.idle_poll, max(0.01, due - self._clock.time()))

    async def _idle(self, seconds: float) -> None:
        """Sleep ``seconds`` of the bus's clock, or less if woken."""
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _deliver(self, item: EventDelivery, policies: Mapping[str, MeshPolicy]) -> None:
        """One send of a claimed delivery, and what it leaves in the store."""
        delivery, event = item.delivery, item.event
        key = delivery.key
        if (delivery.subscriber, delivery.handler) not in subscribers_of(
            event.topic, dict(policies)
        ):
            reason = f"{delivery.subscriber} no longer subscribes to {event.topic} at this handler"
            await self._bury(item, reason)
            return
        try:
            status = await self._sender.send(
                delivery.subscriber, delivery.handler, event.cloudevent
            )
        except Exception as exc:  # no answer: a failed attempt, whatever the transport said
            error = f"no answer: {type(exc).__name__}: {exc}"[:_ERROR_TEXT]
        else:
            if 200 <= status < 300:
                await asyncio.to_thread(self._store.mark_delivered, key, self._clock.time())
                return
            error = f"HTTP {status}"
        if delivery.attempts >= self._config.max_attempts:
            await self._bury(item, f"{delivery.attempts} attempts; the last: {error}")
            return
        delay = backoff_delay(
            delivery.attempts,
            base=self._config.base_delay,
            cap=self._config.max_delay,
            jitter=self._jitter(),
        )
        await asyncio.to_thread(self._store.mark_failed, key, self._clock.time() + delay, error)

    async def _bury(self, item: EventDelivery, reason: str) -> None:
        delivery, event = item.delivery, item.event
        await asyncio.to_thread(self._store.mark_dead, delivery.key, reason, self._clock.time())
        log.warning(
            "event %s to %s%s is dead: %s", event.id, delivery.subscriber, delivery.handler, reason
        )
        await self._record(
            AuditEvent(
                actor=self._system,
                action="events.dead",
                target=f"{delivery.subscriber}{delivery.handler}"[:1000],
                outcome="failure",
                reason=reason[:1000],
                details={
                    "event": event.id,
                    "topic": event.topic,
                    "publisher": event.publisher,
                    "attempts": delivery.attempts,
                },
            )
        )

    async def _record(self, event: AuditEvent) -> None:
        if self._audit is None:
            return
        try:
            await self._audit.record(event)
        except Exception:  # the audit trail's trouble must not stop deliveries
            log.exception("cannot audit %s", event.action)
