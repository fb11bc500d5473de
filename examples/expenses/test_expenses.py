"""The expenses app, started as a real process on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

APP_DIR = Path(__file__).parent
REVISION = "rev-test-1"  # what examples/conftest.py gives the app
PREFIX = "/apps/expenses"


@pytest.fixture
def start_app(launch: Any) -> Callable[[], Any]:
    """Start the app as the platform would."""
    return lambda: launch([sys.executable, "app.py"], APP_DIR)


def test_healthz_answers_ok(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_home_shows_revision_and_links_under_the_forwarded_prefix(client: httpx.Client) -> None:
    direct = client.get("/")
    proxied = client.get("/", headers={"X-Forwarded-Prefix": PREFIX})

    assert direct.headers["content-type"].startswith("text/html")
    assert "Expense reports" in direct.text
    assert REVISION in direct.text
    assert 'href="/api/expenses"' in direct.text
    assert f'href="{PREFIX}/api/expenses"' in proxied.text


def test_a_prefix_that_is_not_a_plain_path_is_ignored(client: httpx.Client) -> None:
    response = client.get("/", headers={"X-Forwarded-Prefix": '/x"><script>'})
    assert "<script>" not in response.text
    assert 'href="/api/expenses"' in response.text


def test_lists_the_seed_expenses(client: httpx.Client) -> None:
    expenses = client.get("/api/expenses").json()
    assert len(expenses) == 3
    assert {"id", "description", "amount", "currency", "submittedBy"} <= set(expenses[0])


def test_a_valid_expense_is_created_and_listed(client: httpx.Client) -> None:
    response = client.post(
        "/api/expenses",
        json={"description": "Taxi", "amount": 23.5, "currency": "EUR", "submittedBy": "dana"},
        headers={"X-Forwarded-Prefix": PREFIX},
    )
    assert response.status_code == 201
    created = response.json()
    assert created["amount"] == "23.50"
    assert response.headers["location"] == f"{PREFIX}/api/expenses/{created['id']}"
    assert created in client.get("/api/expenses").json()


def test_an_invalid_expense_gets_a_problem_naming_each_field(client: httpx.Client) -> None:
    response = client.post(
        "/api/expenses", json={"description": "", "amount": -5, "currency": "euro", "x": 1}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {"description", "amount", "currency", "x"}
    assert len(client.get("/api/expenses").json()) == 3  # nothing was stored


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [("{not json", "application/json", 400), ("a=1", "text/plain", 415)],
)
def test_a_body_that_is_not_json_is_refused(
    client: httpx.Client, content: str, content_type: str, status: int
) -> None:
    response = client.post("/api/expenses", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["status"] == status


def test_an_unknown_path_gets_a_problem(client: httpx.Client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_one_connection_carries_several_requests(
    start_app: Callable[[], Any], same_connection_gets: Callable[..., list[bytes]]
) -> None:
    app = start_app()
    assert same_connection_gets(app.port, "/healthz") == [b'{"status":"ok"}'] * 3


def test_sigterm_stops_it_with_exit_code_0_after_logging_requests(
    start_app: Callable[[], Any],
) -> None:
    app = start_app()
    httpx.get(f"{app.url}/api/expenses", timeout=5.0)

    assert app.stop() == 0
    assert "GET /api/expenses" in app.stdout.read_text()
