"""``courtyard alerts`` and ``courtyard silence`` against the alerts routes served for real
(uvicorn on loopback)."""

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
from courtyard.audit import Actor
from courtyard.cli._alerts import register
from courtyard.contracts import SloSpec
from courtyard.core import SystemClock
from courtyard.iam import Principal
from courtyard.telemetry._alerts import Alert, AlertEngine
from courtyard.telemetry.api import alerts_router
from fakes import RecordingAudit

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


class Outage:
    def slos(self, app: str | None = None) -> list[SloSpec]:
        return [SloSpec("shop", "availability", "availability", 0.999)]

    def burn_rate(self, spec: SloSpec, window: float) -> tuple[float, int]:
        return (1000.0, 100) if window <= 3600 else (0.0, 100)  # the page rule only


class NoNotifier:
    def notify(self, alert: Alert) -> None:
        return None

    async def drain(self) -> None:
        return None


class AdminToken:
    """The node's guard in miniature: ``Bearer admin-token`` is a platform admin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admin = dict(scope.get("headers", ())).get(b"authorization") == b"Bearer admin-token"
        if scope["type"] == "http" and admin:
            state = scope.setdefault("state", {})
            state["principal"] = ADMIN
            state["actor"] = Actor(kind="user", id=ADMIN.id, auth="token")
        await self.app(scope, receive, send)


def cli() -> typer.Typer:
    return cli_of(register)


@pytest.fixture
def node_url() -> Iterator[str]:
    engine = AlertEngine(Outage(), NoNotifier(), None, RecordingAudit(), clock=SystemClock())
    asyncio.run(engine.evaluate())
    app = FastAPI()
    app.include_router(alerts_router(engine))
    app.add_middleware(AdminToken)
    with served(app) as url:
        yield url


def run(url: str, tmp_path: Path, *args: str, token: str = "admin-token") -> Result:
    arguments = [*args, "--url", url, "--data-dir", str(tmp_path)]
    return runner.invoke(cli(), arguments, env={"COLUMNS": "200", "COURTYARD_TOKEN": token})


def test_alerts_lists_what_fires(node_url: str, tmp_path: Path) -> None:
    listed = run(node_url, tmp_path, "alerts")
    assert listed.exit_code == 0, listed.output
    for word in ("APP", "SLO", "SEVERITY", "STATE", "SINCE", "BURN", "shop", "availability"):
        assert word in listed.stdout
    assert "page" in listed.stdout and "firing" in listed.stdout and "1000x/1h" in listed.stdout
    assert "ticket" not in listed.stdout
    as_json = json.loads(run(node_url, tmp_path, "alerts", "--all", "--json").stdout)
    assert [a["fingerprint"] for a in as_json] == ["shop/availability/page"]


def test_a_silence_from_create_to_expire(node_url: str, tmp_path: Path) -> None:
    created = run(
        node_url,
        tmp_path,
        "silence",
        "create",
        "shop",
        "--severity",
        "page",
        "--for",
        "2h",
        "--comment",
        "planned migration",
        "--json",
    )
    assert created.exit_code == 0, created.output
    silence = json.loads(created.stdout)
    assert silence["severity"] == "page" and silence["createdBy"] == "u_admin"
    listed = run(node_url, tmp_path, "silence", "list")
    assert silence["id"] in listed.stdout and "planned migration" in listed.stdout
    assert "u_admin" in listed.stdout
    ended = run(node_url, tmp_path, "silence", "expire", silence["id"])
    assert ended.exit_code == 0 and f"Silence {silence['id']} ended." in ended.stdout
    assert "No silence is in force." in run(node_url, tmp_path, "silence", "list").stdout
    again = run(node_url, tmp_path, "silence", "expire", silence["id"])
    assert again.exit_code == 1 and "Silence not found" in again.stderr


def test_bad_input_is_one_line(node_url: str, tmp_path: Path) -> None:
    bad = run(node_url, tmp_path, "silence", "create", "shop", "--for", "soon", "--comment", "x")
    assert bad.exit_code == 1
    assert "Invalid silence" in bad.stderr and "Traceback" not in bad.output
    refused = run(
        node_url,
        tmp_path,
        "silence",
        "create",
        "shop",
        "--for",
        "2h",
        "--comment",
        "x",
        token="nobody",
    )
    assert refused.exit_code == 1 and "Not authenticated" in refused.stderr
    human = run(node_url, tmp_path, "silence", "create", "shop", "--for", "1h", "--comment", "x")
    assert human.exit_code == 0 and "Silenced shop until" in human.stdout
