"""One behaviour for every event store: memory, SQLite and (integration) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backends import BACKENDS, sql_database
from courtyard.mesh._events_sql import SqlEventStore
from courtyard.mesh._events_store import (
    MAX_ERROR,
    DeliveryKey,
    EventStore,
    MemoryEventStore,
    StoredEvent,
)

T0 = 1_700_000_000.0
LEASE = 60.0


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        yield MemoryEventStore()
        return
    with sql_database(request, tmp_path) as db:
        yield SqlEventStore(db)


def event(event_id: str, topic: str = "notes.created", publisher: str = "notes") -> StoredEvent:
    text = f'{{"id":"{event_id}","type":"{topic}"}}'
    return StoredEvent(event_id, topic, publisher, text, T0)


SUBSCRIBERS = [("audit-trail", "/events"), ("search", "/hooks/notes")]


def test_publish_stores_the_event_and_a_pending_delivery_per_subscriber(
    store: EventStore,
) -> None:
    stored, created = store.publish(event("e1"), SUBSCRIBERS, T0)
    assert created and stored == event("e1")
    assert store.event("e1") == event("e1")
    assert store.event("nope") is None
    deliveries = store.deliveries("e1")
    assert [(d.subscriber, d.handler, d.state, d.attempts) for d in deliveries] == [
        ("audit-trail", "/events", "pending", 0),
        ("search", "/hooks/notes", "pending", 0),
    ]
    assert all(d.next_attempt_at == T0 and d.delivered_at is None for d in deliveries)
    assert store.next_due() == T0


def test_publishing_an_id_again_writes_nothing(store: EventStore) -> None:
    store.publish(event("e1"), SUBSCRIBERS, T0)
    stored, created = store.publish(event("e1", topic="other"), [("x", "/y")], T0 + 5)
    assert not created and stored == event("e1")
    assert [d.subscriber for d in store.deliveries("e1")] == ["audit-trail", "search"]


def test_an_event_without_subscribers_is_stored_alone(store: EventStore) -> None:
    assert store.publish(event("lonely"), [], T0)[1]
    assert store.event("lonely") is not None and store.deliveries("lonely") == []
    assert store.next_due() is None
    assert store.claim_due(T0 + 1, 10, LEASE) == []


def test_claim_takes_due_deliveries_oldest_first_and_leases_them(store: EventStore) -> None:
    store.publish(event("e1"), [("a", "/h")], T0)
    store.publish(event("e2"), [("a", "/h"), ("b", "/h")], T0 + 1)
    store.publish(event("later"), [("a", "/h")], T0 + 100)
    claimed = store.claim_due(T0 + 10, 2, LEASE)
    assert [(c.event.id, c.delivery.subscriber) for c in claimed] == [("e1", "a"), ("e2", "a")]
    assert claimed[0].event == event("e1")
    first = claimed[0].delivery
    assert (first.attempts, first.next_attempt_at, first.last_attempt_at) == (
        1,
        T0 + 10 + LEASE,
        T0 + 10,
    )
    # Leased: not claimed again until the lease runs out, the rest are.
    again = store.claim_due(T0 + 10, 10, LEASE)
    assert [(c.event.id, c.delivery.subscriber) for c in again] == [("e2", "b")]
    assert store.claim_due(T0 + 20, 10, LEASE) == []
    expired = store.claim_due(T0 + 10 + LEASE, 10, LEASE)
    assert {(c.event.id, c.delivery.subscriber, c.delivery.attempts) for c in expired} == {
        ("e1", "a", 2),
        ("e2", "a", 2),
        ("e2", "b", 2),
    }
    assert store.claim_due(T0, 0, LEASE) == []


def test_marking_delivered_failed_and_dead(store: EventStore) -> None:
    store.publish(event("e1"), [("a", "/h"), ("b", "/h"), ("c", "/h")], T0)
    store.claim_due(T0, 10, LEASE)
    store.mark_delivered(DeliveryKey("e1", "a", "/h"), T0 + 1)
    store.mark_failed(DeliveryKey("e1", "b", "/h"), T0 + 30, "HTTP 503")
    store.mark_dead(DeliveryKey("e1", "c", "/h"), "x" * (MAX_ERROR + 50), T0 + 2)
    a, b, c = store.deliveries("e1")
    assert (a.state, a.delivered_at) == ("delivered", T0 + 1)
    assert (b.state, b.next_attempt_at, b.last_error) == ("pending", T0 + 30, "HTTP 503")
    assert c.state == "dead" and c.last_error is not None and len(c.last_error) == MAX_ERROR
    assert store.next_due() == T0 + 30
    assert [x.delivery.subscriber for x in store.claim_due(T0 + 30, 10, LEASE)] == ["b"]


def test_a_late_failure_never_undoes_a_delivery(store: EventStore) -> None:
    """Two overlapping sends (a lease ran out): whichever says 2xx wins."""
    key = DeliveryKey("e1", "a", "/h")
    store.publish(event("e1"), [("a", "/h")], T0)
    store.claim_due(T0, 10, LEASE)
    store.mark_delivered(key, T0 + 1)
    store.mark_failed(key, T0 + 5, "HTTP 500")
    store.mark_dead(key, "gave up", T0 + 6)
    store.mark_delivered(key, T0 + 7)
    (delivery,) = store.deliveries("e1")
    assert (delivery.state, delivery.delivered_at, delivery.last_error) == (
        "delivered",
        T0 + 1,
        None,
    )
    assert store.next_due() is None


def test_dead_lists_by_topic_and_redrive_makes_them_pending(store: EventStore) -> None:
    store.publish(event("e1"), [("a", "/h"), ("b", "/h")], T0)
    store.publish(event("e2", topic="orders.paid", publisher="shop"), [("a", "/h")], T0)
    store.publish(event("e3"), [("a", "/h")], T0)
    store.claim_due(T0, 10, LEASE)
    for key in (("e1", "a"), ("e1", "b"), ("e2", "a")):
        store.mark_dead(DeliveryKey(*key, "/h"), "HTTP 500", T0 + 1)
    dead = store.dead()
    assert [(d.event.id, d.delivery.subscriber) for d in dead] == [
        ("e1", "a"),
        ("e1", "b"),
        ("e2", "a"),
    ]
    assert dead[2].event == event("e2", topic="orders.paid", publisher="shop")
    assert dead[0].delivery.attempts == 1 and dead[0].delivery.last_error == "HTTP 500"
    assert [d.event.id for d in store.dead(topic="orders.paid")] == ["e2"]
    assert len(store.dead(limit=1)) == 1
    assert store.redrive(["e1", "nope"], T0 + 50) == 2
    assert store.redrive([], T0 + 50) == 0
    assert [d.event.id for d in store.dead()] == ["e2"]
    redriven = store.deliveries("e1")
    assert all(
        (d.state, d.attempts, d.next_attempt_at) == ("pending", 0, T0 + 50) for d in redriven
    )
    assert store.redrive(None, T0 + 60) == 1
    assert store.dead() == []
    assert store.redrive(None, T0 + 70) == 0


def test_concurrent_claims_never_hand_out_one_delivery_twice(store: EventStore) -> None:
    subscribers = [(f"app-{i}", "/h") for i in range(20)]
    for n in range(5):
        store.publish(event(f"e{n}"), subscribers, T0)
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: store.claim_due(T0, 7, LEASE), range(20)))
    claimed = [c.delivery.key for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed)) == 100


def test_concurrent_publishes_of_one_id_store_it_once(store: EventStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.publish(event("same"), SUBSCRIBERS, T0), range(8)))
    assert sum(created for _, created in results) == 1
    assert len(store.deliveries("same")) == 2
