"""``/api/v1/alerts`` and ``/api/v1/silences`` in process: listings, a silence's life cycle
with the caller recorded, and RFC 9457 problems for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from courtyard.audit import Actor
from courtyard.contracts import SloSpec
from courtyard.core import FakeClock
from courtyard.iam import Principal
from courtyard.telemetry._alerts import Alert, AlertConfig, AlertEngine
from courtyard.telemetry.api import alerts_router, parse_duration
from fakes import RecordingAudit

SLO = SloSpec("shop", "availability", "availability", 0.999)


class Outage:
    def __init__(self) -> None:
        self.burning = True

    def slos(self, app: str | None = None) -> list[SloSpec]:
        return [SLO]

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]:
        return (1000.0, 100) if self.burning else (0.0, 100)


class NoNotifier:
    def notify(self, alert: Alert) -> None:
        return None

    async def drain(self) -> None:
        return None


def principal(*roles: str) -> Principal:
    return Principal(
        kind="user",
        id="u_admin",
        email="admin@example.com",
        name="Admin",
        groups=(),
        roles=roles,
        app_roles={},
        auth="password",
        session_id=None,
    )


class Rig:
    def __init__(self) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        self.audit = RecordingAudit()
        self.source = Outage()
        self.engine = AlertEngine(
            self.source,
            NoNotifier(),
            None,
            self.audit,
            clock=self.clock,
            config=AlertConfig(min_events=10),
        )
        self.caller: Principal | None = principal("platform-admin")
        app = FastAPI()
        app.include_router(alerts_router(self.engine))

        @app.middleware("http")
        async def authenticate(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            if self.caller is not None:  # what the node's guard puts there
                request.state.principal = self.caller
                request.state.actor = Actor(
                    kind=self.caller.kind, id=self.caller.id, auth=self.caller.auth
                )
            return await call_next(request)

        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node"
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    try:
        yield rig
    finally:
        await rig.client.aclose()


async def test_alerts_lists_firing_then_resolved_with_all(rig: Rig) -> None:
    assert (await rig.client.get("/api/v1/alerts")).json() == []
    await rig.engine.evaluate()
    firing = (await rig.client.get("/api/v1/alerts")).json()
    assert [(a["fingerprint"], a["state"]) for a in firing] == [
        ("shop/availability/page", "firing"),
        ("shop/availability/ticket", "firing"),
    ]
    assert firing[0]["burn"]["long"] == "1h" and firing[0]["burn"]["factor"] == 13.44
    rig.source.burning = False
    await rig.clock.advance(10)
    await rig.engine.evaluate()
    assert (await rig.client.get("/api/v1/alerts")).json() == []
    everything = (await rig.client.get("/api/v1/alerts", params={"all": "true"})).json()
    assert [a["state"] for a in everything] == ["resolved", "resolved"]
    assert everything[0]["resolvedAt"] == rig.clock.time()


async def test_a_silence_is_created_listed_and_expired(rig: Rig) -> None:
    answer = await rig.client.post(
        "/api/v1/silences",
        json={
            "app": "shop",
            "slo": "availability",
            "severity": "page",
            "duration": "2h",
            "comment": "planned migration",
        },
    )
    assert answer.status_code == 201
    created = answer.json()
    assert created["createdBy"] == "u_admin"
    assert created["endsAt"] == rig.clock.time() + 7200
    assert (created["app"], created["slo"], created["severity"]) == ("shop", "availability", "page")
    listed = (await rig.client.get("/api/v1/silences")).json()
    assert [s["id"] for s in listed] == [created["id"]]
    create = rig.audit.events[-1]
    assert create.action == "silence.create"
    assert create.actor == Actor(kind="user", id="u_admin", auth="password")

    await rig.engine.evaluate()
    alerts = (await rig.client.get("/api/v1/alerts")).json()
    assert {a["severity"]: a["silenced"] for a in alerts} == {"page": True, "ticket": False}

    gone = await rig.client.delete(f"/api/v1/silences/{created['id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert rig.audit.events[-1].action == "silence.expire"
    assert (await rig.client.get("/api/v1/silences")).json() == []
    again = await rig.client.delete(f"/api/v1/silences/{created['id']}")
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"


async def test_a_duration_in_seconds(rig: Rig) -> None:
    answer = await rig.client.post(
        "/api/v1/silences", json={"app": "shop", "duration": 90, "comment": "x"}
    )
    assert answer.status_code == 201
    assert answer.json()["endsAt"] == rig.clock.time() + 90
    assert answer.json()["slo"] is None and answer.json()["severity"] is None


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"duration": "2h", "comment": "x"}, "'app'"),
        ({"app": "Shop!", "duration": "2h", "comment": "x"}, "'app'"),
        ({"app": "shop", "slo": "a b", "duration": "2h", "comment": "x"}, "'slo'"),
        ({"app": "shop", "severity": "urgent", "duration": "2h", "comment": "x"}, "severity"),
        ({"app": "shop", "comment": "x"}, "'duration'"),
        ({"app": "shop", "duration": "soon", "comment": "x"}, "duration"),
        ({"app": "shop", "duration": "0s", "comment": "x"}, "more than 0"),
        ({"app": "shop", "duration": "91d", "comment": "x"}, "90 days"),
        ({"app": "shop", "duration": -5, "comment": "x"}, "more than 0"),
        ({"app": "shop", "duration": True, "comment": "x"}, "duration"),
        ({"app": "shop", "duration": "2h"}, "'comment'"),
        ({"app": "shop", "duration": "2h", "comment": "  "}, "'comment'"),
        ({"app": "shop", "duration": "2h", "comment": "a\nb"}, "one line"),
        ({"app": "shop", "duration": "2h", "comment": "x" * 1025}, "one line"),
        (["shop"], "JSON object"),
    ],
)
async def test_bad_silences_are_problems(rig: Rig, body: object, mentions: str) -> None:
    answer = await rig.client.post("/api/v1/silences", json=body)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 400 and problem["title"] == "Invalid silence"
    assert mentions in problem["detail"]
    assert rig.engine.silences() == [] and rig.audit.events == []


async def test_a_body_that_is_not_json(rig: Rig) -> None:
    answer = await rig.client.post(
        "/api/v1/silences", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and "not JSON" in answer.json()["detail"]


async def test_changes_need_a_signed_in_admin(rig: Rig) -> None:
    body = {"app": "shop", "duration": "2h", "comment": "x"}
    rig.caller = principal("viewer")
    assert (await rig.client.post("/api/v1/silences", json=body)).status_code == 403
    assert (await rig.client.delete("/api/v1/silences/abc")).status_code == 403
    rig.caller = None
    assert (await rig.client.post("/api/v1/silences", json=body)).status_code == 401
    assert rig.engine.silences() == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1.5h", 5400),
        (60, 60),
        (0.5, 0.5),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
