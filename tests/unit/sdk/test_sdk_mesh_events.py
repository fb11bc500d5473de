"""Receiving events (EventHandler behind IdentityMiddleware, driven through httpx.ASGITransport;
the WSGI twin through httpx.WSGITransport) and the FakeMesh app tests use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from courtyard.sdk import (
    CLOUDEVENTS_JSON,
    DEFAULT_EVENTS_IDENTITY,
    CloudEvent,
    EventHandler,
    EventWSGIHandler,
    IdentityMiddleware,
    IdentityWSGIMiddleware,
    InvalidEvent,
    MeshError,
    event_handler,
)
from courtyard.sdk.testing import FakeMesh, IdentityMinter, ManualClock, cloud_event


class Inbox:
    """The subscriber's function: keeps what it received, fails when told to."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.fail = False

    async def __call__(self, event: CloudEvent) -> None:
        if self.fail:
            raise RuntimeError("the database is down")
        self.events.append(event)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


@pytest.fixture
async def client(inbox: Inbox, minter: IdentityMinter) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/events/paid", EventHandler(inbox), methods=["POST", "GET"])])
    async with _client(IdentityMiddleware(app, minter.verifier())) as http:
        yield http


async def test_a_delivered_event_reaches_the_function(
    client: httpx.AsyncClient, inbox: Inbox, minter: IdentityMinter, now: ManualClock
) -> None:
    delivery = minter.event_request("invoice.paid", {"invoice": 7}, publisher="billing", id="e1")
    response = await client.post("/events/paid", **delivery)
    assert response.status_code == 204
    (event,) = inbox.events
    assert (event.id, event.type, event.topic, event.data) == (
        "e1",
        "invoice.paid",
        "invoice.paid",
        {"invoice": 7},
    )
    assert event.source == "spiffe://courtyard.local/app/billing"
    assert event.publisher == "billing"
    assert event.time == datetime.fromtimestamp(now(), UTC)
    assert event.datacontenttype == "application/json"


async def test_an_app_that_is_not_the_event_bus_is_refused(
    client: httpx.AsyncClient, inbox: Inbox, minter: IdentityMinter
) -> None:
    body = json.dumps(cloud_event("invoice.paid", {})).encode()
    for headers in (
        minter.mesh_headers("mallory"),  # another app calling the handler through the mesh
        minter.headers(sub="u_dana"),  # a person through the gateway
        minter.mesh_headers("mallory", sub="u_dana"),
    ):
        response = await client.post(
            "/events/paid", content=body, headers={**headers, "Content-Type": CLOUDEVENTS_JSON}
        )
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert "event bus" in response.json()["detail"]
    assert inbox.events == []


async def test_without_a_verified_identity_the_handler_answers_401(
    inbox: Inbox, minter: IdentityMinter
) -> None:
    app = IdentityMiddleware(EventHandler(inbox), minter.verifier(), required=False)
    async with _client(app) as http:
        response = await http.post("/", content=b"{}", headers={"Content-Type": CLOUDEVENTS_JSON})
    assert response.status_code == 401
    assert "IdentityMiddleware" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "content_type", "body", "status"),
    [
        ("GET", CLOUDEVENTS_JSON, b"", 405),
        ("POST", "application/json", b"{}", 415),
        ("POST", CLOUDEVENTS_JSON, b"not json", 400),
        ("POST", CLOUDEVENTS_JSON, b"[]", 400),
        ("POST", CLOUDEVENTS_JSON, b'{"id": "1", "source": "s", "type": "t"}', 400),
        ("POST", CLOUDEVENTS_JSON, b'{"specversion": "1.0", "source": "s", "type": "t"}', 400),
    ],
)
async def test_requests_that_are_not_events_are_refused(
    client: httpx.AsyncClient,
    inbox: Inbox,
    minter: IdentityMinter,
    method: str,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    headers = {**minter.event_request("t")["headers"], "Content-Type": content_type}
    response = await client.request(method, "/events/paid", content=body, headers=headers)
    assert response.status_code == status
    if status == 405:
        assert response.headers["allow"] == "POST"
    assert inbox.events == []


async def test_a_failing_function_answers_500_so_the_bus_retries(
    client: httpx.AsyncClient, inbox: Inbox, minter: IdentityMinter
) -> None:
    inbox.fail = True
    response = await client.post("/events/paid", **minter.event_request("t", 1, id="e-9"))
    assert response.status_code == 500
    assert response.json()["detail"] == "the handler of event e-9 failed"
    assert "database" not in response.text  # the exception stays in the app's log


async def test_an_event_too_large_is_refused(inbox: Inbox, minter: IdentityMinter) -> None:
    app = IdentityMiddleware(EventHandler(inbox, max_body=64), minter.verifier())
    async with _client(app) as http:
        delivery = minter.event_request("t", "x" * 100)
        response = await http.post("/", **delivery)
    assert response.status_code == 413


async def test_the_decorator_bare_and_with_options(minter: IdentityMinter) -> None:
    seen: list[str] = []

    @event_handler
    def plain(event: CloudEvent) -> None:  # a sync function runs in a worker thread
        seen.append(f"plain:{event.id}")

    bus = "spiffe://corp.example/app/courtyard"

    @event_handler(events_identity=bus)
    async def custom(event: CloudEvent) -> None:
        seen.append(f"custom:{event.id}")

    assert isinstance(plain, EventHandler) and isinstance(custom, EventHandler)
    async with _client(IdentityMiddleware(plain, minter.verifier())) as http:
        assert (await http.post("/", **minter.event_request("t", id="a"))).status_code == 204
    async with _client(IdentityMiddleware(custom, minter.verifier())) as http:
        refused = await http.post("/", **minter.event_request("t", id="b"))
        assert refused.status_code == 403  # delivered by the default bus identity, not ours
        delivery = minter.event_request("t", id="c", events_identity=bus)
        assert (await http.post("/", **delivery)).status_code == 204
    assert seen == ["plain:a", "custom:c"]


async def test_a_standalone_handler_answers_the_lifespan_protocol(inbox: Inbox) -> None:
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await EventHandler(inbox)({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_parsing_keeps_extensions_and_checks_types() -> None:
    document = {**cloud_event("t", [1], id="x"), "traceparent": "00-abc", "subject": "inv-7"}
    event = CloudEvent.from_document(document)
    assert dict(event.extensions) == {"traceparent": "00-abc"}
    assert event.subject == "inv-7"
    with pytest.raises(InvalidEvent, match="time is not an RFC 3339"):
        CloudEvent.from_document({**document, "time": "yesterday"})
    with pytest.raises(InvalidEvent, match="subject is not a string"):
        CloudEvent.from_document({**document, "subject": 7})
    assert CloudEvent("1", "https://elsewhere", "t").publisher is None


def test_the_wsgi_handler(minter: IdentityMinter) -> None:
    received: list[CloudEvent] = []

    def function(event: CloudEvent) -> None:
        if event.data == "boom":
            raise ValueError("boom")
        received.append(event)

    app = IdentityWSGIMiddleware(EventWSGIHandler(function), minter.verifier())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://app") as http:
        assert http.post("/", **minter.event_request("t", {"n": 1}, id="w1")).status_code == 204
        assert http.post("/", **minter.event_request("t", "boom")).status_code == 500
        other = minter.mesh_headers("mallory")
        body = json.dumps(cloud_event("t"))
        refused = http.post("/", content=body, headers={**other, "Content-Type": CLOUDEVENTS_JSON})
        assert refused.status_code == 403
        assert http.get("/", headers=minter.event_request("t")["headers"]).status_code == 405
    assert [event.id for event in received] == ["w1"]


def test_the_minters_mesh_assertions(minter: IdentityMinter) -> None:
    verifier = minter.verifier()
    alone = verifier.verify(minter.mesh_headers("billing")["Courtyard-Identity"])
    assert (alone.sub, alone.act, alone.name, alone.email) == (
        "spiffe://courtyard.local/app/billing",
        "spiffe://courtyard.local/app/billing",
        "billing",
        "",
    )
    for_user = verifier.verify(minter.mesh_headers("billing", sub="u_dana")["Courtyard-Identity"])
    assert (for_user.sub, for_user.act) == ("u_dana", "spiffe://courtyard.local/app/billing")
    bus = verifier.verify(minter.event_request("t")["headers"]["Courtyard-Identity"])
    assert bus.act == DEFAULT_EVENTS_IDENTITY


# FakeMesh ------------------------------------------------------------------------------------


def test_fake_mesh_answers_and_records_calls(minter: IdentityMinter) -> None:
    mesh = FakeMesh(app="expenses")
    mesh.respond("ledger", "/entries", "POST", status=201, json={"id": "e_1"})
    mesh.respond("ledger", "/entries/*", json={"amount": 3})
    user = minter.verifier().verify(minter.mint(sub="u_dana"))
    with mesh.client(clock=ManualClock(1_800_000_000.0)) as client:
        created = client.call("ledger", "/entries", "POST", json={"amount": 3}, on_behalf_of=user)
        assert (created.status_code, created.json()) == (201, {"id": "e_1"})
        assert client.call("ledger", "/entries/e_1", params={"v": "2"}, timeout=2).json() == {
            "amount": 3
        }
        with pytest.raises(MeshError) as caught:
            client.call("ledger", "/elsewhere")
    assert caught.value.status == 404
    assert "respond()" in caught.value.detail
    first, second, _ = mesh.calls
    assert (first.service, first.method, first.path, first.json()) == (
        "ledger",
        "POST",
        "/entries",
        {"amount": 3},
    )
    assert first.on_behalf_of == user.token and first.deadline is None
    assert (second.path, dict(second.params), second.deadline) == (
        "/entries/e_1",
        {"v": "2"},
        1_800_000_002_000,
    )
    assert len(mesh.calls_to("ledger")) == 3 and mesh.calls_to("other") == []


async def test_fake_mesh_routes_to_a_function_and_records_publishes() -> None:
    mesh = FakeMesh()

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"path": request.url.path, "query": request.url.query.decode()}
        )

    mesh.route("ledger", echo, path="/echo/**", method="GET")
    async with mesh.async_client() as client:
        answer = await client.call("ledger", "/echo/a/b", params={"q": "1"})
        assert answer.json() == {"path": "/echo/a/b", "query": "q=1"}
        event_id = await client.publish("invoice.paid", {"invoice": 7})
        assert await client.publish("invoice.paid", None, id="mine") == "mine"
    assert [(e.topic, e.data) for e in mesh.published] == [
        ("invoice.paid", {"invoice": 7}),
        ("invoice.paid", None),
    ]
    assert mesh.published[0].id == event_id


def test_fake_mesh_enforces_the_declared_calls_and_topics() -> None:
    mesh = FakeMesh(
        app="expenses",
        consumes=[{"service": "ledger", "paths": ["/entries/**"], "methods": ["GET"]}],
        publishes=["expense.submitted"],
    )
    mesh.respond("ledger")
    with mesh.client() as client:
        assert client.call("ledger", "/entries/1").status_code == 200
        with pytest.raises(MeshError, match="does not declare POST calls to ledger") as caught:
            client.call("ledger", "/entries", "POST")
        assert caught.value.status == 403
        with pytest.raises(MeshError, match=r"does not declare topic other \(publishes\)"):
            client.publish("other", {})
        client.publish("expense.submitted", {})
    assert [e.topic for e in mesh.published] == ["expense.submitted"]
