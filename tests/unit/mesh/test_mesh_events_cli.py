"""``courtyard events`` against the events routes served for real (uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
import typer
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner, Result

from cli_testkit import cli_of, served
from courtyard.cli._events import register
from courtyard.contracts import MeshPolicy, Subscription
from courtyard.iam import Principal
from courtyard.mesh._events import EventBus, EventBusConfig
from courtyard.mesh._events_store import MemoryEventStore
from courtyard.mesh.api import events_router

runner = CliRunner()
ADMIN = Principal(
    kind="user",
    id="u_admin",
    email="admin@example.com",
    name="Admin",
    groups=(),
    roles=("platform-admin",),
    app_roles=MappingProxyType({}),
    auth="token",
    session_id=None,
)


class Refuses:
    async def send(self, subscriber: str, handler: str, cloudevent: str) -> int:
        return 503


class Verifier:
    def verify(self, token: str) -> dict[str, object]:
        raise ValueError("unused")


class AdminToken:
    """The node's guard in miniature: ``Bearer admin-token`` is a platform admin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = dict(scope.get("headers", ())).get(b"authorization") == b"Bearer admin-token"
        if scope["type"] == "http" and admin:
            scope.setdefault("state", {})["principal"] = ADMIN
        await self.app(scope, receive, send)


def cli() -> typer.Typer:
    return cli_of(register)


@pytest.fixture
def node_url() -> Iterator[str]:
    async def policies() -> dict[str, MeshPolicy]:
        return {
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

    bus = EventBus(MemoryEventStore(), policies, Refuses(), config=EventBusConfig(max_attempts=1))

    async def dead_letters() -> None:
        for n in range(2):
            await bus.publish("notes", "notes.created", b"{}", "application/json", event_id=f"e{n}")
        await bus.deliver_due()

    asyncio.run(dead_letters())
    app = FastAPI()
    app.include_router(events_router(bus, Verifier()))
    app.add_middleware(AdminToken)
    with served(app) as url:
        yield url


def run(url: str, tmp_path: Path, *args: str, token: str = "admin-token") -> Result:
    arguments = ["events", *args, "--url", url, "--data-dir", str(tmp_path)]
    return runner.invoke(cli(), arguments, env={"COLUMNS": "200", "COURTYARD_TOKEN": token})


def test_dead_and_redrive_through_the_node(node_url: str, tmp_path: Path) -> None:
    listed = run(node_url, tmp_path, "dead")
    assert listed.exit_code == 0, listed.output
    assert "e0" in listed.stdout and "search/in" in listed.stdout and "HTTP 503" in listed.stdout
    as_json = json.loads(run(node_url, tmp_path, "dead", "--json").stdout)
    assert [item["id"] for item in as_json] == ["e0", "e1"]
    assert run(node_url, tmp_path, "dead", "--topic", "x.y").stdout.strip() == (
        "No dead deliveries."
    )
    one = run(node_url, tmp_path, "redrive", "e0")
    assert one.exit_code == 0 and "Redrove 1 delivery." in one.stdout
    rest = run(node_url, tmp_path, "redrive", "--all", "--json")
    assert json.loads(rest.stdout) == {"redriven": 1}
    none = run(node_url, tmp_path, "redrive", "--all")
    assert "nothing to redrive" in none.stdout
    refused = run(node_url, tmp_path, "dead", token="someone")
    assert refused.exit_code == 1 and "Not authenticated" in refused.stderr


def test_redrive_needs_ids_or_all(tmp_path: Path) -> None:
    for args in ([], ["e1", "--all"]):
        result = runner.invoke(cli(), ["events", "redrive", *args, "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 1
        assert "give event ids or --all" in result.stderr
