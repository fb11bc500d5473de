"""The event bus with a fake clock and a fake sender: the CloudEvent it stores, who receives
it, retries with backoff, dead letters, redrive and idempotent ids."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import pytest

from courtyard.audit import Actor
from courtyard.contracts import MeshPolicy, Subscription
from courtyard.core import FakeClock
from courtyard.mesh._events import (
    CLOUDEVENTS_JSON,
    EventBus,
    EventBusConfig,
    backoff_delay,
    build_cloudevent,
)
from courtyard.mesh._events_errors import EventIdTaken, EventInvalid, PublishRefused
from courtyard.mesh._events_store import EventDelivery, MemoryEventStore
from fakes import RecordingAudit

T0 = 1_700_000_000.0
JSON = "application/json"


def policy(
    publishes: list[str] | None = None, subscribes: dict[str, str] | None = None
) -> MeshPolicy:
    return MeshPolicy(
        consumes=[],
        accepts=None,
        publishes=publishes or [],
        subscribes=[Subscription(topic=t, handler=h) for t, h in (subscribes or {}).items()],
    )


class FakeSender:
    """Answers 200 unless told otherwise per subscriber (a status, or an exception to raise)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.answers: dict[str, deque[int | Exception]] = defaultdict(deque)
        self.always: dict[str, int | Exception] = {}
        self.arrived: asyncio.Queue[str] = asyncio.Queue()

    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        self.sent.append((subscriber, handler, json.loads(cloudevent)))
        self.arrived.put_nowait(subscriber)
        queued = self.answers[subscriber]
        answer = queued.popleft() if queued else self.always.get(subscriber, 200)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def to(self, subscriber: str) -> list[dict[str, Any]]:
        return [event for who, _, event in self.sent if who == subscriber]


class World:
    def __init__(self, config: EventBusConfig | None = None) -> None:
        self.clock = FakeClock(start=T0)
        self.store = MemoryEventStore()
        self.sender = FakeSender()
        self.audit = RecordingAudit()
        self.policies: dict[str, MeshPolicy] = {
            "notes": policy(publishes=["notes.created"]),
            "search": policy(subscribes={"notes.created": "/hooks/notes"}),
            "mailer": policy(subscribes={"notes.created": "/events"}),
            "bystander": policy(subscribes={"orders.paid": "/events"}),
        }
        self.bus = EventBus(
            self.store,
            self.current,
            self.sender,
            audit=self.audit,
            config=config,
            clock=self.clock,
            jitter=lambda: 0.0,
        )

    async def current(self) -> dict[str, MeshPolicy]:
        return dict(self.policies)

    async def publish(self, data: Any = None, **kwargs: Any) -> str:
        body = json.dumps({"title": "hello"} if data is None else data).encode()
        return await self.bus.publish("notes", "notes.created", body, JSON, **kwargs)

    def states(self, event_id: str) -> dict[str, tuple[str, int]]:
        return {d.subscriber: (d.state, d.attempts) for d in self.store.deliveries(event_id)}


async def until(condition: Callable[[], bool]) -> None:
    """Let the bus's tasks (and the store's threads) run until ``condition`` holds."""
    for _ in range(200_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the bus never got there")


@pytest.fixture
def world() -> World:
    return World()


# -- backoff -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 0.5),
        (1, 1.0, 1.0),
        (2, 0.0, 1.0),
        (2, 0.5, 1.5),
        (3, 1.0, 4.0),
        (8, 0.0, 64.0),
        (9, 1.0, 256.0),
        (10, 0.0, 150.0),  # 512 s capped at 300 s
        (10, 1.0, 300.0),
        (500, 1.0, 300.0),  # no overflow
        (2, 7.0, 2.0),  # jitter clamped to 0..1
    ],
)
def test_backoff_table(attempt: int, jitter: float, expected: float) -> None:
    assert backoff_delay(attempt, base=1.0, cap=300.0, jitter=jitter) == expected


def test_backoff_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0, base=1.0, cap=300.0, jitter=0.0)


def test_config_refuses_nonsense() -> None:
    for bad in ({"max_attempts": 0}, {"base_delay": 0}, {"base_delay": 9, "max_delay": 1}):
        with pytest.raises(ValueError):
            EventBusConfig(**bad)  # type: ignore[arg-type]


# -- the envelope ----------------------------------------------------------------------------


def envelope(body: bytes, content_type: str = JSON, event_id: str | None = None) -> dict[str, Any]:
    return build_cloudevent(
        trust_domain="courtyard.local",
        publisher="notes",
        topic="notes.created",
        body=body,
        content_type=content_type,
        event_id=event_id,
        now=T0 + 0.25,
        new_id=lambda: "generated",
    )


def test_a_json_body_becomes_the_data_of_a_cloudevent() -> None:
    assert envelope(b'{"title": "hi"}', "application/json; charset=utf-8") == {
        "specversion": "1.0",
        "id": "generated",
        "source": "spiffe://courtyard.local/app/notes",
        "type": "notes.created",
        "time": "2023-11-14T22:13:20.250Z",
        "datacontenttype": "application/json",
        "data": {"title": "hi"},
    }
    assert envelope(b"[1, 2]", "application/problem+json", event_id="n-1")["id"] == "n-1"
    assert envelope(b"null")["data"] is None


def test_a_structured_cloudevent_keeps_id_subject_extensions_not_source_or_type() -> None:
    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "note-7",
            "source": "spiffe://courtyard.local/app/admin",
            "type": "anything.else",
            "time": "1999-01-01T00:00:00Z",
            "subject": "notes/7",
            "traceparent": "00-abc-def-01",
            "datacontenttype": "application/json",
            "data": {"n": 7},
        }
    ).encode()
    document = envelope(body, CLOUDEVENTS_JSON)
    assert (document["id"], document["source"], document["type"], document["time"]) == (
        "note-7",
        "spiffe://courtyard.local/app/notes",
        "notes.created",
        "2023-11-14T22:13:20.250Z",
    )
    assert (document["subject"], document["traceparent"], document["data"]) == (
        "notes/7",
        "00-abc-def-01",
        {"n": 7},
    )
    assert envelope(b'{"data": 1}', CLOUDEVENTS_JSON, event_id="h")["id"] == "h"


@pytest.mark.parametrize(
    ("body", "content_type", "event_id", "status", "message"),
    [
        (b"", JSON, None, 400, "empty"),
        (b"{nope", JSON, None, 400, "not JSON"),
        (b"hello", "text/plain", None, 415, "events are JSON"),
        (b"{}", "", None, 415, "no content type"),
        (b"{}", JSON, "has space", 400, "printable"),
        (b"{}", JSON, "x" * 129, 400, "1 to 128"),
        (b"[]", CLOUDEVENTS_JSON, None, 400, "JSON object"),
        (b'{"specversion": "0.3"}', CLOUDEVENTS_JSON, None, 400, "1.0"),
        (b'{"data_base64": "AA=="}', CLOUDEVENTS_JSON, None, 415, "data_base64"),
        (b'{"datacontenttype": "text/xml"}', CLOUDEVENTS_JSON, None, 415, "must be JSON"),
        (b'{"id": 5}', CLOUDEVENTS_JSON, None, 400, "string"),
        (b'{"id": "a"}', CLOUDEVENTS_JSON, "b", 400, "differ"),
        (b'{"Bad-Name": 1}', CLOUDEVENTS_JSON, None, 400, "attribute name"),
        (b'{"ext": {"x": 1}}', CLOUDEVENTS_JSON, None, 400, "string, integer or boolean"),
    ],
)
def test_bodies_that_are_not_events(
    body: bytes, content_type: str, event_id: str | None, status: int, message: str
) -> None:
    with pytest.raises(EventInvalid, match=message) as raised:
        envelope(body, content_type, event_id)
    assert raised.value.status == status


# -- publishing ------------------------------------------------------------------------------


async def test_publish_stores_one_delivery_per_subscriber_and_only_those(world: World) -> None:
    event_id = await world.publish({"title": "hello"})
    stored = world.store.event(event_id)
    assert stored is not None and (stored.publisher, stored.topic) == ("notes", "notes.created")
    assert json.loads(stored.cloudevent)["data"] == {"title": "hello"}
    assert world.states(event_id) == {"mailer": ("pending", 0), "search": ("pending", 0)}
    assert await world.bus.deliver_due() == 2
    assert world.states(event_id) == {"mailer": ("delivered", 1), "search": ("delivered", 1)}
    assert sorted((who, handler) for who, handler, _ in world.sender.sent) == [
        ("mailer", "/events"),
        ("search", "/hooks/notes"),
    ]
    assert world.sender.to("search")[0] == json.loads(stored.cloudevent)
    assert world.sender.to("bystander") == []
    assert await world.bus.deliver_due() == 0  # nothing twice


async def test_an_undeclared_topic_is_refused_and_audited(world: World) -> None:
    with pytest.raises(PublishRefused, match=r"does not declare topic orders\.paid"):
        await world.bus.publish("notes", "orders.paid", b"{}", JSON)
    with pytest.raises(PublishRefused, match="not in the catalog"):
        await world.bus.publish("ghost", "notes.created", b"{}", JSON)
    assert world.audit.actions() == [
        ("access.deny", "event-topic:orders.paid", "denied"),
        ("access.deny", "event-topic:notes.created", "denied"),
    ]
    assert world.audit.events[0].actor == Actor(
        kind="service", id="spiffe://courtyard.local/app/notes", auth="workload"
    )
    assert world.store.claim_due(T0 + 1e6, 100, 60) == []


async def test_a_publisher_id_is_idempotent(world: World) -> None:
    first = await world.publish({"n": 1}, event_id="note-1")
    again = await world.publish({"n": 2}, event_id="note-1")
    assert first == again == "note-1"
    assert len(world.store.deliveries("note-1")) == 2
    assert await world.bus.deliver_due() == 2
    assert [e["data"] for e in world.sender.to("search")] == [{"n": 1}]
    world.policies["shop"] = policy(publishes=["orders.paid"])
    with pytest.raises(EventIdTaken):
        await world.bus.publish("shop", "orders.paid", b"{}", JSON, event_id="note-1")


async def test_a_failing_subscriber_is_retried_with_backoff_until_it_answers(
    world: World,
) -> None:
    world.sender.answers["search"].extend([503, ConnectionError("refused"), 500])
    event_id = await world.publish()
    assert await world.bus.deliver_due() == 2
    search = world.store.deliveries(event_id)[1]
    assert (search.state, search.attempts, search.last_error) == ("pending", 1, "HTTP 503")
    assert search.next_attempt_at == T0 + 0.5  # backoff(1) with no jitter
    assert await world.bus.deliver_due() == 0  # not due yet
    await world.clock.advance(0.5)
    assert await world.bus.deliver_due() == 1
    search = world.store.deliveries(event_id)[1]
    assert search.last_error == "no answer: ConnectionError: refused"
    assert search.next_attempt_at == T0 + 0.5 + 1.0
    await world.clock.advance(1.0)
    await world.bus.deliver_due()
    await world.clock.advance(2.0)
    assert await world.bus.deliver_due() == 1
    assert world.states(event_id) == {"mailer": ("delivered", 1), "search": ("delivered", 4)}
    assert len(world.sender.to("search")) == 4
    assert len({e["id"] for e in world.sender.to("search")}) == 1  # the same event each time


async def test_after_max_attempts_a_delivery_is_dead_and_redrive_revives_it(
    world: World,
) -> None:
    world.sender.always["search"] = 500
    event_id = await world.publish()
    sends = 0
    for _ in range(20):
        sends += await world.bus.deliver_due()
        await world.clock.advance(400)
    assert world.states(event_id) == {"mailer": ("delivered", 1), "search": ("dead", 8)}
    assert len(world.sender.to("search")) == 8 and sends == 9
    (dead,) = await world.bus.dead()
    assert (dead.event.id, dead.delivery.subscriber) == (event_id, "search")
    assert dead.delivery.last_error == "8 attempts; the last: HTTP 500"
    assert await world.bus.dead(topic="orders.paid") == []
    assert ("events.dead", "search/hooks/notes", "failure") in world.audit.actions()

    del world.sender.always["search"]
    admin = Actor(kind="user", id="u_admin", auth="password")
    assert await world.bus.redrive(admin, [event_id], request_id="r-1") == 1
    assert world.states(event_id)["search"] == ("pending", 0)
    assert await world.bus.deliver_due() == 1
    assert world.states(event_id)["search"] == ("delivered", 1)
    assert await world.bus.dead() == []
    redrive = world.audit.events[-1]
    assert (redrive.action, redrive.actor, redrive.request_id) == ("events.redrive", admin, "r-1")
    assert redrive.details == {"all": False, "events": [event_id], "redriven": 1}


async def test_redrive_all(world: World) -> None:
    world.bus = EventBus(
        world.store,
        world.current,
        world.sender,
        config=EventBusConfig(max_attempts=1),
        clock=world.clock,
    )
    world.sender.always["mailer"] = 404
    ids = [await world.publish() for _ in range(3)]
    await world.bus.deliver_due()
    assert [d.event.id for d in await world.bus.dead()] == ids
    system = Actor(kind="system", id="test")
    assert await world.bus.redrive(system, None) == 3
    assert await world.bus.redrive(system, None) == 0


async def test_a_subscriber_that_unsubscribed_gets_nothing_more(world: World) -> None:
    event_id = await world.publish()
    world.policies["search"] = policy()
    assert await world.bus.deliver_due() == 2
    assert world.sender.to("search") == []
    (dead,) = await world.bus.dead()
    assert dead.delivery.subscriber == "search"
    assert (
        dead.delivery.last_error == "search no longer subscribes to notes.created at this handler"
    )
    assert world.states(event_id)["mailer"] == ("delivered", 1)


async def test_a_new_subscriber_gets_events_published_after_it_subscribed(world: World) -> None:
    before = await world.publish()
    world.policies["late"] = policy(subscribes={"notes.created": "/in"})
    after = await world.publish()
    assert "late" not in world.states(before) and "late" in world.states(after)


async def test_run_delivers_as_events_arrive_and_retries_when_due(world: World) -> None:
    world.sender.answers["search"].append(503)
    runner = asyncio.create_task(world.bus.run())
    try:
        event_id = await world.publish()
        arrived = {await world.sender.arrived.get(), await world.sender.arrived.get()}
        assert arrived == {"search", "mailer"}
        # The retry is due in 0.5 s of the fake clock: advancing it wakes the loop.
        await until(
            lambda: world.states(event_id)["search"] == ("pending", 1) and world.clock.sleepers > 0
        )
        await world.clock.advance(0.5)
        assert await world.sender.arrived.get() == "search"
        await until(lambda: world.states(event_id)["search"] == ("delivered", 2))
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert world.states(event_id) == {"mailer": ("delivered", 1), "search": ("delivered", 2)}


async def test_run_keeps_at_most_concurrency_sends_under_way() -> None:
    world = World(EventBusConfig(concurrency=2))
    gate = asyncio.Event()
    under_way = 0
    most = 0

    class SlowSender(FakeSender):
        async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
            nonlocal under_way, most
            under_way += 1
            most = max(most, under_way)
            self.arrived.put_nowait(subscriber)
            await gate.wait()
            under_way -= 1
            return 200

    sender = SlowSender()
    world.bus = EventBus(
        world.store, world.current, sender, clock=world.clock, config=world.bus.config
    )
    ids = [await world.publish() for _ in range(3)]  # six deliveries
    runner = asyncio.create_task(world.bus.run())
    try:
        for _ in range(2):
            await sender.arrived.get()
        for _ in range(20):
            await asyncio.sleep(0)
        assert under_way == 2
        gate.set()
        for _ in range(4):
            await sender.arrived.get()
        await until(
            lambda: all(s == ("delivered", 1) for i in ids for s in world.states(i).values())
        )
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert most == 2


class FlakyStore(MemoryEventStore):
    """A memory store whose first claims fail, like a database that is briefly away."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def claim_due(self, now: float, limit: int, lease: float) -> list[EventDelivery]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is locked")
        return super().claim_due(now, limit, lease)


async def test_run_outlives_a_database_that_is_away(world: World) -> None:
    store = world.store = FlakyStore(failures=1)
    world.bus = EventBus(store, world.current, world.sender, clock=world.clock)
    event_id = await world.publish()
    runner = asyncio.create_task(world.bus.run())
    try:
        await until(lambda: store.failures == 0 and world.clock.sleepers > 0)
        assert world.sender.sent == []
        await world.clock.advance(world.bus.config.idle_poll)
        await until(lambda: set(world.states(event_id).values()) == {("delivered", 1)})
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
