"""The events routes over ``httpx.ASGITransport``: publishing only with the mesh's assertion,
and the dead-letter API for platform admins only. Also the assertion verifier on a real key
ring."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from courtyard.audit import Actor
from courtyard.contracts import MeshPolicy, Subscription
from courtyard.core import FakeClock
from courtyard.iam import KeyRing, MemoryOidcStore, Principal
from courtyard.mesh._events import EventBus, EventBusConfig
from courtyard.mesh._events_http import IdentityAssertionVerifier
from courtyard.mesh._events_store import MemoryEventStore
from courtyard.mesh.api import events_router
from fakes import RecordingAudit

T0 = 1_700_000_000.0
NOTES = "spiffe://courtyard.local/app/notes"
TOKENS: dict[str, dict[str, Any]] = {
    "notes": {"aud": "courtyard", "sub": NOTES, "act": {"sub": NOTES}},
    "user": {"aud": "courtyard", "sub": "u_1"},  # an end user's assertion: no act
    "stranger": {"aud": "courtyard", "act": {"sub": "spiffe://elsewhere/app/notes"}},
}


class FakeVerifier:
    def verify(self, token: str) -> dict[str, Any]:
        if token not in TOKENS:
            raise ValueError("bad signature")
        return TOKENS[token]


class AlwaysOk:
    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        return 200


class AlwaysFails:
    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        return 500


def principal(*roles: str) -> Principal:
    return Principal(
        kind="user",
        id="u_admin" if roles else "u_user",
        email="a@example.com",
        name="A",
        groups=(),
        roles=roles,
        app_roles=MappingProxyType({}),
        auth="password",
        session_id=None,
    )


class AsCaller:
    """What the node's credentials guard does: the caller named by ``X-Test-Caller``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-test-caller", b"").decode()
            if who:
                found = principal("platform-admin") if who == "admin" else principal()
                state = scope.setdefault("state", {})
                state["principal"] = found
                state["actor"] = Actor(kind="user", id=found.id, auth="password")
        await self.app(scope, receive, send)


class Node:
    def __init__(self) -> None:
        self.store = MemoryEventStore()
        self.audit = RecordingAudit()
        self.policies = {
            "notes": MeshPolicy(
                consumes=[], accepts=None, publishes=["notes.created"], subscribes=[]
            ),
            "search": MeshPolicy(
                consumes=[],
                accepts=None,
                publishes=[],
                subscribes=[Subscription(topic="notes.created", handler="/in")],
            ),
        }
        self.bus = EventBus(
            self.store,
            self.current,
            AlwaysFails(),
            audit=self.audit,
            config=EventBusConfig(max_attempts=1),
            clock=FakeClock(start=T0),
        )
        app = FastAPI()
        app.include_router(events_router(self.bus, FakeVerifier()))
        app.add_middleware(AsCaller)
        self.app = app

    async def current(self) -> dict[str, MeshPolicy]:
        return self.policies


@pytest.fixture
def node() -> Node:
    return Node()


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=node.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as http:
        yield http


def identity(token: str) -> dict[str, str]:
    return {"Courtyard-Identity": token}


async def test_a_workload_publishes_through_the_mesh(client: httpx.AsyncClient, node: Node) -> None:
    answer = await client.post(
        "/internal/events/notes.created", json={"title": "hi"}, headers=identity("notes")
    )
    assert answer.status_code == 202
    event_id = answer.json()["id"]
    stored = node.store.event(event_id)
    assert stored is not None and stored.publisher == "notes"
    assert json.loads(stored.cloudevent)["source"] == NOTES
    assert [d.subscriber for d in node.store.deliveries(event_id)] == ["search"]
    # The publisher's own id (CloudEvents HTTP binding ce-id) makes a retry harmless.
    headers = {**identity("notes"), "ce-id": "note-1"}
    for _ in range(2):
        again = await client.post("/internal/events/notes.created", json={}, headers=headers)
        assert (again.status_code, again.json()) == (202, {"id": "note-1"})
    assert len(node.store.deliveries("note-1")) == 1


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "publish through the mesh"),
        (identity("forged"), 401, "invalid identity assertion: bad signature"),
        (identity("user"), 403, "only an app's workload"),
        (identity("stranger"), 403, "only an app's workload"),
    ],
)
async def test_publishers_the_mesh_did_not_vouch_for_are_refused(
    client: httpx.AsyncClient, node: Node, headers: dict[str, str], status: int, detail: str
) -> None:
    answer = await client.post("/internal/events/notes.created", json={}, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert detail in answer.json()["detail"]
    assert node.store.next_due() is None


async def test_the_catalog_is_checked_again_and_bad_bodies_refused(
    client: httpx.AsyncClient, node: Node
) -> None:
    refused = await client.post("/internal/events/orders.paid", json={}, headers=identity("notes"))
    assert refused.status_code == 403
    assert refused.json()["title"] == "Publish refused"
    assert node.audit.actions() == [("access.deny", "event-topic:orders.paid", "denied")]
    text = await client.post(
        "/internal/events/notes.created",
        content=b"hi",
        headers={**identity("notes"), "content-type": "text/plain"},
    )
    assert text.status_code == 415
    broken = await client.post(
        "/internal/events/notes.created",
        content=b"{",
        headers={**identity("notes"), "content-type": "application/json"},
    )
    assert (broken.status_code, broken.json()["title"]) == (400, "Invalid event")
    huge = await client.post(
        "/internal/events/notes.created",
        content=b"[" + b"1," * (600 * 1024) + b"1]",
        headers={**identity("notes"), "content-type": "application/json"},
    )
    assert huge.status_code == 413
    node.policies["shop"] = MeshPolicy(
        consumes=[], accepts=None, publishes=["orders.paid"], subscribes=[]
    )
    TOKENS["shop"] = {"aud": "courtyard", "act": {"sub": "spiffe://courtyard.local/app/shop"}}
    try:
        await client.post(
            "/internal/events/notes.created", json={}, headers={**identity("notes"), "ce-id": "x"}
        )
        taken = await client.post(
            "/internal/events/orders.paid", json={}, headers={**identity("shop"), "ce-id": "x"}
        )
    finally:
        del TOKENS["shop"]
    assert (taken.status_code, taken.json()["id"]) == (409, "x")
    assert node.store.next_due() is not None


async def test_dead_letters_and_redrive_are_for_admins(
    client: httpx.AsyncClient, node: Node
) -> None:
    published = await client.post(
        "/internal/events/notes.created", json={}, headers={**identity("notes"), "ce-id": "e-1"}
    )
    assert published.status_code == 202
    await node.bus.deliver_due()  # max_attempts=1 and the subscriber fails: dead at once
    for who, status in (("", 401), ("user", 403)):
        headers = {"x-test-caller": who} if who else {}
        assert (await client.get("/api/v1/events/dead", headers=headers)).status_code == status
        redrive = await client.post("/api/v1/events/redrive", json={"all": True}, headers=headers)
        assert redrive.status_code == status
    admin = {"x-test-caller": "admin"}
    dead = await client.get("/api/v1/events/dead", headers=admin)
    assert dead.status_code == 200
    (item,) = dead.json()
    assert item == {
        "id": "e-1",
        "topic": "notes.created",
        "publisher": "notes",
        "subscriber": "search",
        "handler": "/in",
        "attempts": 1,
        "lastError": "1 attempts; the last: HTTP 500",
        "lastAttemptAt": T0,
        "createdAt": T0,
    }
    other = await client.get("/api/v1/events/dead", params={"topic": "x.y"}, headers=admin)
    assert other.json() == []
    bodies: list[dict[str, Any]] = [{}, {"ids": ["e-1"], "all": True}, {"ids": []}]
    for body in bodies:
        bad = await client.post("/api/v1/events/redrive", json=body, headers=admin)
        assert bad.status_code == 422, body
    redriven = await client.post(
        "/api/v1/events/redrive",
        json={"ids": ["e-1"]},
        headers={**admin, "x-request-id": "req-9"},
    )
    assert redriven.json() == {"redriven": 1}
    assert (await client.get("/api/v1/events/dead", headers=admin)).json() == []
    audited = node.audit.events[-1]
    assert (audited.action, audited.actor.id, audited.request_id) == (
        "events.redrive",
        "u_admin",
        "req-9",
    )


# -- the real verifier on a key ring -------------------------------------------------------


async def test_the_assertion_verifier_checks_alg_issuer_audience_and_expiry() -> None:
    clock = FakeClock(start=T0)
    ring = await KeyRing.load(MemoryOidcStore(), clock=clock)
    other = await KeyRing.load(MemoryOidcStore(), clock=clock)
    verifier = IdentityAssertionVerifier(ring, "https://courtyard.test", clock=clock)
    good = {
        "iss": "https://courtyard.test",
        "aud": "courtyard",
        "iat": int(T0),
        "exp": int(T0) + 60,
        "sub": NOTES,
        "act": {"sub": NOTES},
    }
    assert verifier.verify(ring.sign(good))["act"] == {"sub": NOTES}
    assert verifier.verify(ring.sign({**good, "aud": ["x", "courtyard"]}))["sub"] == NOTES
    refusals = [
        (other.sign(good), "not a token we signed"),
        (ring.sign(good, alg="RS256"), "alg, typ"),
        (ring.sign(good, typ="at+jwt"), "alg, typ"),
        (ring.sign({**good, "iss": "https://evil"}), "issuer"),
        (ring.sign({**good, "aud": "search"}), "audience"),
        (ring.sign({**good, "exp": int(T0) - 10}), "expired"),
        (ring.sign({k: v for k, v in good.items() if k != "exp"}), "expired"),
        (ring.sign({**good, "iat": int(T0) + 3600}), "future"),
        ("not.a.jwt", "not a token we signed"),
    ]
    for token, reason in refusals:
        with pytest.raises(ValueError, match=reason):
            verifier.verify(token)
