"""``courtyard clients`` and ``courtyard keys`` against the admin API on a loopback server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import typer
import uvicorn
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from typer.testing import CliRunner

from courtyard.cli._oidc import register
from courtyard.iam._oidc import OidcProvider
from courtyard.iam._oidc_routes import clients_router, oidc_router

from .conftest import ADMIN, REDIRECT

runner = CliRunner()


class _Admin(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        is_admin = request.headers.get("authorization") == "Bearer admin-token"
        request.state.principal = ADMIN if is_admin else None
        return await call_next(request)


@pytest.fixture
def node_url(provider: OidcProvider) -> Iterator[str]:
    app = FastAPI()
    app.add_middleware(_Admin)
    app.include_router(oidc_router(provider))
    app.include_router(clients_router(provider))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):  # wait up to 10 s for the server to listen
            if server.started:
                break
            thread.join(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_clients_and_keys_commands(
    cli: typer.Typer, node_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COURTYARD_URL", node_url)
    monkeypatch.setenv("COURTYARD_TOKEN", "admin-token")
    created = runner.invoke(
        cli, ["clients", "create", "notes", "--name", "Notes", "--redirect-uri", REDIRECT]
    )
    assert created.exit_code == 0, created.output
    assert "client secret" in created.output and "shown only this once" in created.output
    listed = runner.invoke(cli, ["clients", "list", "--json"])
    [client] = json.loads(listed.output)["clients"]
    shown = runner.invoke(cli, ["clients", "show", client["clientId"]])
    assert "https://app.example.com/callback" in shown.output
    rotated = runner.invoke(cli, ["clients", "rotate-secret", client["clientId"]])
    assert rotated.exit_code == 0 and "client secret" in rotated.output
    rotate = runner.invoke(cli, ["keys", "rotate"])
    assert rotate.exit_code == 0, rotate.output
    assert "published" in rotate.output and "propagation delay" in rotate.output
    keys = runner.invoke(cli, ["keys", "list"])
    assert "next" in keys.output and "active" in keys.output
    deleted = runner.invoke(cli, ["clients", "delete", client["clientId"]])
    assert deleted.exit_code == 0
    missing = runner.invoke(cli, ["clients", "show", client["clientId"]])
    assert missing.exit_code == 1


def test_a_refused_registration_is_one_clear_line(
    cli: typer.Typer, node_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COURTYARD_URL", node_url)
    monkeypatch.setenv("COURTYARD_TOKEN", "admin-token")
    result = runner.invoke(
        cli, ["clients", "create", "notes", "--name", "N", "--redirect-uri", "http://x.test/cb"]
    )
    assert result.exit_code == 1 and "https" in result.output
    monkeypatch.setenv("COURTYARD_TOKEN", "wrong")
    denied = runner.invoke(cli, ["keys", "list"])
    assert denied.exit_code == 1
