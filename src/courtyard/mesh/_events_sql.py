"""The event bus in the platform database (SQLite or PostgreSQL).

An event and its deliveries are inserted in one transaction, committed durably (SQLite runs
with ``synchronous=FULL``) before the publisher is answered. Claims take their rows with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so control planes sharing a database never claim
the same delivery; on SQLite ``BEGIN IMMEDIATE`` already serializes them.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Row, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from courtyard.mesh._events_store import (
    Delivery,
    DeliveryKey,
    EventDelivery,
    StoredEvent,
    clip,
)
from courtyard.store import Database
from courtyard.store._schema_events import deliveries_table, events_table

_E = events_table.c
_D = deliveries_table.c


class SqlEventStore:
    """An :class:`EventStore` on a :class:`courtyard.store.Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def publish(
        self, event: StoredEvent, subscribers: Sequence[tuple[str, str]], now: float
    ) -> tuple[StoredEvent, bool]:
        try:
            with self._db.begin() as connection:
                existing = connection.execute(select(events_table).where(_E.id == event.id))
                row = existing.first()
                if row is not None:
                    return _event_from(row), False
                connection.execute(
                    insert(events_table).values(
                        id=event.id,
                        topic=event.topic,
                        publisher=event.publisher,
                        cloudevent=event.cloudevent,
                        created_at=event.created_at,
                    )
                )
                if subscribers:
                    connection.execute(
                        insert(deliveries_table),
                        [
                            {
                                "event_id": event.id,
                                "subscriber": subscriber,
                                "handler": handler,
                                "state": "pending",
                                "attempts": 0,
                                "next_attempt_at": now,
                            }
                            for subscriber, handler in dict.fromkeys(subscribers)
                        ],
                    )
                return event, True
        except IntegrityError:
            # A concurrent publish of the same id committed first: it is the event.
            stored = self.event(event.id)
            if stored is None:
                raise
            return stored, False

    def event(self, event_id: str) -> StoredEvent | None:
        with self._db.read() as connection:
            row = connection.execute(select(events_table).where(_E.id == event_id)).first()
        return _event_from(row) if row is not None else None

    def deliveries(self, event_id: str) -> builtins.list[Delivery]:
        query = (
            select(deliveries_table)
            .where(_D.event_id == event_id)
            .order_by(_D.subscriber, _D.handler)
        )
        with self._db.read() as connection:
            return [_delivery_from(row) for row in connection.execute(query)]

    def claim_due(self, now: float, limit: int, lease: float) -> builtins.list[EventDelivery]:
        if limit <= 0:
            return []
        query = (
            select(deliveries_table, *_event_columns())
            .join(events_table, _E.id == _D.event_id)
            .where(_D.state == "pending", _D.next_attempt_at <= now)
            .order_by(_D.next_attempt_at, _E.seq, _D.subscriber, _D.handler)
            .limit(limit)
            .with_for_update(of=deliveries_table, skip_locked=True)
        )
        claimed = []
        with self._db.begin() as connection:
            for row in connection.execute(query).all():
                delivery = _delivery_from(row)
                connection.execute(
                    update(deliveries_table)
                    .where(_key(delivery.key))
                    .values(
                        attempts=_D.attempts + 1, next_attempt_at=now + lease, last_attempt_at=now
                    )
                )
                delivery = replace(
                    delivery,
                    attempts=delivery.attempts + 1,
                    next_attempt_at=now + lease,
                    last_attempt_at=now,
                )
                claimed.append(EventDelivery(delivery, _joined_event(row)))
        return claimed

    def next_due(self) -> float | None:
        query = select(func.min(_D.next_attempt_at)).where(_D.state == "pending")
        with self._db.read() as connection:
            value = connection.execute(query).scalar()
        return float(value) if value is not None else None

    def mark_delivered(self, key: DeliveryKey, now: float) -> None:
        with self._db.begin() as connection:
            connection.execute(
                update(deliveries_table)
                .where(_key(key), _D.state != "delivered")
                .values(state="delivered", delivered_at=now)
            )

    def mark_failed(self, key: DeliveryKey, next_attempt_at: float, error: str) -> None:
        with self._db.begin() as connection:
            connection.execute(
                update(deliveries_table)
                .where(_key(key), _D.state == "pending")
                .values(next_attempt_at=next_attempt_at, last_error=clip(error))
            )

    def mark_dead(self, key: DeliveryKey, error: str, now: float) -> None:
        with self._db.begin() as connection:
            connection.execute(
                update(deliveries_table)
                .where(_key(key), _D.state == "pending")
                .values(state="dead", next_attempt_at=now, last_error=clip(error))
            )

    def dead(self, topic: str | None = None, limit: int = 1000) -> builtins.list[EventDelivery]:
        query = (
            select(deliveries_table, *_event_columns())
            .join(events_table, _E.id == _D.event_id)
            .where(_D.state == "dead")
            .order_by(_E.seq, _D.subscriber, _D.handler)
            .limit(max(0, limit))
        )
        if topic is not None:
            query = query.where(_E.topic == topic)
        with self._db.read() as connection:
            rows = connection.execute(query).all()
        return [EventDelivery(_delivery_from(row), _joined_event(row)) for row in rows]

    def redrive(self, event_ids: Sequence[str] | None, now: float) -> int:
        statement = (
            update(deliveries_table)
            .where(_D.state == "dead")
            .values(state="pending", attempts=0, next_attempt_at=now)
        )
        if event_ids is not None:
            if not event_ids:
                return 0
            statement = statement.where(_D.event_id.in_(list(dict.fromkeys(event_ids))))
        with self._db.begin() as connection:
            return int(connection.execute(statement).rowcount)


def _key(key: DeliveryKey) -> Any:
    return and_(
        _D.event_id == key.event_id, _D.subscriber == key.subscriber, _D.handler == key.handler
    )


def _event_columns() -> tuple[Any, ...]:
    # Labelled: the event's columns beside a delivery's in one row.
    return (
        _E.topic.label("event_topic"),
        _E.publisher.label("event_publisher"),
        _E.cloudevent.label("event_cloudevent"),
        _E.created_at.label("event_created_at"),
    )


def _event_from(row: Row[Any]) -> StoredEvent:
    return StoredEvent(row.id, row.topic, row.publisher, row.cloudevent, row.created_at)


def _joined_event(row: Row[Any]) -> StoredEvent:
    return StoredEvent(
        row.event_id,
        row.event_topic,
        row.event_publisher,
        row.event_cloudevent,
        row.event_created_at,
    )


def _delivery_from(row: Row[Any]) -> Delivery:
    return Delivery(
        event_id=row.event_id,
        subscriber=row.subscriber,
        handler=row.handler,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )
