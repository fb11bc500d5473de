"""Where the event bus keeps events and deliveries: the ``EventStore`` protocol, its records
and the in-memory backend (tests, throw-away dev nodes).

A delivery is one event for one subscriber's handler. It is ``pending`` until a send of it is
answered 2xx (``delivered``) or it has failed too often (``dead``, until an operator redrives
it). Claiming a pending delivery pushes its due time forward by a lease, so a send that is
still under way is not started again, and a send lost in a crash is retried once the lease
runs out (at-least-once).
"""

from __future__ import annotations

import builtins
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, Protocol

DeliveryState = Literal["pending", "delivered", "dead"]
MAX_ERROR = 1024  # characters of an error kept on a delivery


@dataclass(frozen=True)
class StoredEvent:
    """An accepted event: ``cloudevent`` is the CloudEvents 1.0 JSON text subscribers get."""

    id: str
    topic: str
    publisher: str
    cloudevent: str
    created_at: float


class DeliveryKey(NamedTuple):
    """Which delivery: one event for one subscriber's handler."""

    event_id: str
    subscriber: str
    handler: str


@dataclass(frozen=True)
class Delivery:
    """Where one event stands for one subscriber's handler."""

    event_id: str
    subscriber: str
    handler: str
    state: DeliveryState
    attempts: int  # sends started so far (a claim counts one)
    next_attempt_at: float
    last_attempt_at: float | None = None
    last_error: str | None = None
    delivered_at: float | None = None

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(self.event_id, self.subscriber, self.handler)


@dataclass(frozen=True)
class EventDelivery:
    """A delivery with its event: what a claim hands the sender and what ``dead`` lists."""

    delivery: Delivery
    event: StoredEvent


class EventStore(Protocol):
    """Persistence of events and deliveries; every method is atomic and thread-safe.

    Methods are synchronous: :class:`courtyard.mesh.EventBus` runs them in a worker thread.
    """

    def publish(
        self, event: StoredEvent, subscribers: Sequence[tuple[str, str]], now: float
    ) -> tuple[StoredEvent, bool]:
        """Store ``event`` and one pending delivery per (subscriber, handler), due ``now``, in
        one durable step; (the event, True). If the id is already stored, write nothing and
        return (the stored event, False)."""
        ...

    def event(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or None."""
        ...

    def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        """The event's deliveries, sorted by subscriber and handler."""
        ...

    def claim_due(self, now: float, limit: int, lease: float) -> builtins.list[EventDelivery]:
        """Up to ``limit`` pending deliveries due by ``now``, longest due first; each counts an
        attempt and is not due again before ``now + lease`` (unless marked meanwhile)."""
        ...

    def next_due(self) -> float | None:
        """When the earliest pending delivery is due, or None when none is pending."""
        ...

    def mark_delivered(self, key: DeliveryKey, now: float) -> None:
        """The subscriber answered 2xx: the delivery is done (whatever it was before)."""
        ...

    def mark_failed(self, key: DeliveryKey, next_attempt_at: float, error: str) -> None:
        """The attempt failed: try again at ``next_attempt_at`` (only if still pending)."""
        ...

    def mark_dead(self, key: DeliveryKey, error: str, now: float) -> None:
        """Give up on a pending delivery until it is redriven."""
        ...

    def dead(self, topic: str | None = None, limit: int = 1000) -> builtins.list[EventDelivery]:
        """Dead deliveries (of ``topic`` only, if given), oldest event first."""
        ...

    def redrive(self, event_ids: Sequence[str] | None, now: float) -> int:
        """Make dead deliveries pending again, due ``now`` with no attempts counted: those of
        ``event_ids``, or every one when None. Returns how many."""
        ...


def clip(error: str) -> str:
    """An error as a delivery keeps it: at most :data:`MAX_ERROR` characters."""
    return error if len(error) <= MAX_ERROR else error[: MAX_ERROR - 1] + "…"


class MemoryEventStore:
    """An :class:`EventStore` in dicts behind a lock: for tests and throw-away dev nodes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, tuple[int, StoredEvent]] = {}
        self._deliveries: dict[DeliveryKey, Delivery] = {}
        self._seq = itertools.count(1)

    def publish(
        self, event: StoredEvent, subscribers: Sequence[tuple[str, str]], now: float
    ) -> tuple[StoredEvent, bool]:
        with self._lock:
            stored = self._events.get(event.id)
            if stored is not None:
                return stored[1], False
            self._events[event.id] = (next(self._seq), event)
            for subscriber, handler in subscribers:
                key = DeliveryKey(event.id, subscriber, handler)
                self._deliveries[key] = Delivery(
                    event.id, subscriber, handler, "pending", 0, next_attempt_at=now
                )
            return event, True

    def event(self, event_id: str) -> StoredEvent | None:
        with self._lock:
            stored = self._events.get(event_id)
            return stored[1] if stored is not None else None

    def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        with self._lock:
            found = [d for d in self._deliveries.values() if d.event_id == event_id]
        return sorted(found, key=lambda d: (d.subscriber, d.handler))

    def claim_due(self, now: float, limit: int, lease: float) -> builtins.list[EventDelivery]:
        with self._lock:
            due = sorted(
                (
                    d
                    for d in self._deliveries.values()
                    if d.state == "pending" and d.next_attempt_at <= now
                ),
                key=self._order,
            )[: max(0, limit)]
            claimed = []
            for delivery in due:
                updated = replace(
                    delivery,
                    attempts=delivery.attempts + 1,
                    next_attempt_at=now + lease,
                    last_attempt_at=now,
                )
                self._deliveries[delivery.key] = updated
                claimed.append(EventDelivery(updated, self._events[delivery.event_id][1]))
            return claimed

    def next_due(self) -> float | None:
        with self._lock:
            due = [d.next_attempt_at for d in self._deliveries.values() if d.state == "pending"]
        return min(due, default=None)

    def mark_delivered(self, key: DeliveryKey, now: float) -> None:
        with self._lock:
            delivery = self._deliveries.get(key)
            if delivery is not None and delivery.state != "delivered":
                self._deliveries[key] = replace(delivery, state="delivered", delivered_at=now)

    def mark_failed(self, key: DeliveryKey, next_attempt_at: float, error: str) -> None:
        with self._lock:
            delivery = self._deliveries.get(key)
            if delivery is not None and delivery.state == "pending":
                self._deliveries[key] = replace(
                    delivery, next_attempt_at=next_attempt_at, last_error=clip(error)
                )

    def mark_dead(self, key: DeliveryKey, error: str, now: float) -> None:
        with self._lock:
            delivery = self._deliveries.get(key)
            if delivery is not None and delivery.state == "pending":
                self._deliveries[key] = replace(
                    delivery, state="dead", next_attempt_at=now, last_error=clip(error)
                )

    def dead(self, topic: str | None = None, limit: int = 1000) -> builtins.list[EventDelivery]:
        with self._lock:
            found = [
                (self._events[d.event_id][0], d.subscriber, d.handler, d)
                for d in self._deliveries.values()
                if d.state == "dead"
                and (topic is None or self._events[d.event_id][1].topic == topic)
            ]
            found.sort(key=lambda item: item[:3])
            return [
                EventDelivery(d, self._events[d.event_id][1]) for *_, d in found[: max(0, limit)]
            ]

    def redrive(self, event_ids: Sequence[str] | None, now: float) -> int:
        wanted = None if event_ids is None else set(event_ids)
        count = 0
        with self._lock:
            for key, delivery in list(self._deliveries.items()):
                if delivery.state == "dead" and (wanted is None or key.event_id in wanted):
                    self._deliveries[key] = replace(
                        delivery, state="pending", attempts=0, next_attempt_at=now
                    )
                    count += 1
        return count

    def _order(self, delivery: Delivery) -> tuple[float, int, str, str]:
        seq = self._events[delivery.event_id][0]
        return (delivery.next_attempt_at, seq, delivery.subscriber, delivery.handler)
