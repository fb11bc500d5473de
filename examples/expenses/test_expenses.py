"""The expenses app, started as a real process on a free loopback port, with the identity
assertions the gateway would add."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from courtyard.sdk.testing import IdentityMinter

APP_DIR = Path(__file__).parent
REVISION = "rev-test-1"  # what examples/conftest.py gives the app
PREFIX = "/apps/expenses"


@pytest.fixture
def start_app(launch: Any) -> Callable[[], Any]:
    """Start the app as the platform would."""
    return lambda: launch([sys.executable, "app.py"], APP_DIR, "expenses")


def test_the_page_greets_the_caller_by_name_escaped(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    # The visitor is called "Dana <Tester>": a name is text, never markup.
    assert "Hello, Dana &lt;Tester&gt;" in page.text
    assert "<Tester>" not in page.text


def test_me_says_who_the_platform_says_is_calling(client: httpx.Client, platform: Any) -> None:
    me = client.get("/api/me").json()
    assert me["greeting"] == "Hello, Dana <Tester>"
    assert (me["sub"], me["email"], me["act"]) == ("u_00000000000000d1", "dana@example.com", None)

    headers = platform.headers("expenses", name="Li", groups=["finance"], act="svc:ledger")
    me = client.get("/api/me", headers=headers).json()
    assert (me["name"], me["groups"], me["act"]) == ("Li", ["finance"], "svc:ledger")


@pytest.mark.parametrize("path", ["/", "/api/expenses", "/api/me", "/nope"])
def test_a_request_without_an_assertion_gets_a_401_problem(client: httpx.Client, path: str) -> None:
    response = httpx.get(f"{client.base_url}{path}", timeout=5.0)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


def test_an_assertion_for_another_app_or_from_another_key_gets_a_401(
    client: httpx.Client, platform: Any
) -> None:
    for_notes = platform.headers("notes")
    assert client.get("/", headers=for_notes).status_code == 401
    forger = IdentityMinter(platform.url, "expenses")
    response = client.get("/", headers=forger.headers())
    assert response.status_code == 401
    assert "unknown key" in response.json()["detail"]


def test_the_health_check_needs_no_assertion(client: httpx.Client) -> None:
    response = httpx.get(f"{client.base_url}/healthz", timeout=5.0)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


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


def test_an_expense_without_submitter_is_by_the_caller(client: httpx.Client) -> None:
    response = client.post("/api/expenses", json={"description": "Taxi", "amount": "9"})
    assert response.json()["submittedBy"] == "Dana <Tester>"


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
    start_app: Callable[[], Any], platform: Any
) -> None:
    app = start_app()
    httpx.get(f"{app.url}/api/expenses", headers=platform.headers("expenses"), timeout=5.0)

    assert app.stop() == 0
    assert "GET /api/expenses" in app.stdout.read_text()
