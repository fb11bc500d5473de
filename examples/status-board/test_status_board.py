"""The status board, started as a real ``node`` process on a free loopback port."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

APP_DIR = Path(__file__).parent
NODE = shutil.which("node")
REVISION = "rev-test-1"  # what examples/conftest.py gives the app
PREFIX = "/apps/status-board"

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js on PATH")


@pytest.fixture
def start_app(launch: Any) -> Callable[[], Any]:
    """Start the app as the platform would."""
    assert NODE is not None
    return lambda: launch([NODE, "server.js"], APP_DIR)


def test_healthz_answers_ok(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_status_reports_app_revision_and_uptime(client: httpx.Client) -> None:
    status = client.get("/api/status").json()
    assert status["app"] == "status-board"
    assert status["revision"] == REVISION
    assert 0 <= status["uptime"] < 60


def test_home_links_under_the_forwarded_prefix(client: httpx.Client) -> None:
    direct = client.get("/")
    proxied = client.get("/", headers={"X-Forwarded-Prefix": PREFIX + "/"})

    assert direct.headers["content-type"].startswith("text/html")
    assert REVISION in direct.text
    assert 'href="/api/status"' in direct.text
    assert f'href="{PREFIX}/api/status"' in proxied.text


def test_a_prefix_that_is_not_a_plain_path_is_ignored(client: httpx.Client) -> None:
    response = client.get("/", headers={"X-Forwarded-Prefix": '/x"><script>'})
    assert "<script>" not in response.text
    assert 'href="/api/status"' in response.text


def test_a_post_gets_a_problem_naming_the_allowed_methods(client: httpx.Client) -> None:
    response = client.post("/api/status", json={"status": "down"})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET, HEAD"
    assert "POST" in response.json()["detail"]


def test_an_unknown_path_gets_a_problem(client: httpx.Client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_one_connection_carries_several_requests(
    start_app: Callable[[], Any], same_connection_gets: Callable[..., list[bytes]]
) -> None:
    app = start_app()
    assert same_connection_gets(app.port, "/healthz") == [b'{"status":"ok"}'] * 3


def test_sigterm_stops_it_with_exit_code_0_after_logging_requests(
    start_app: Callable[[], Any],
) -> None:
    app = start_app()
    with httpx.Client(base_url=app.url, timeout=5.0) as idle_keep_alive:
        idle_keep_alive.get("/api/status")

        started = time.monotonic()
        assert app.stop() == 0
        # An idle keep-alive connection must not hold shutdown until the grace period ends.
        assert time.monotonic() - started < 3.0
    assert '"GET /api/status HTTP/1.1" 200' in app.stdout.read_text()
