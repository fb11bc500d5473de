"""The notes app, started as a real process on a free loopback port, with the identity
assertions the gateway would add."""

from __future__ import annotations

import http.client
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

APP_DIR = Path(__file__).parent
REVISION = "rev-test-1"  # what examples/conftest.py gives the app
PREFIX = "/apps/notes"


@pytest.fixture
def start_app(launch: Any) -> Callable[..., Any]:
    """Start the app (or a changed copy of it) as the platform would."""
    return lambda app_dir=APP_DIR: launch([sys.executable, "app.py"], app_dir, "notes")


def test_the_page_greets_the_caller_by_name_escaped(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<p class="greeting">Hello, Dana &lt;Tester&gt;</p>' in page.text


def test_me_says_who_the_platform_says_is_calling(client: httpx.Client, platform: Any) -> None:
    me = client.get("/me").json()
    assert me["greeting"] == "Hello, Dana <Tester>"
    assert (me["sub"], me["email"]) == ("u_00000000000000d1", "dana@example.com")

    headers = platform.headers("notes", sub="svc:backup", email="", name="", roles=["viewer"])
    me = client.get("/me", headers=headers).json()
    assert (me["greeting"], me["roles"]) == ("Hello, svc:backup", ["viewer"])


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/"), ("GET", "/notes"), ("POST", "/notes"), ("GET", "/version")]
)
def test_a_request_without_an_assertion_gets_a_401_problem(
    client: httpx.Client, method: str, path: str
) -> None:
    response = httpx.request(method, f"{client.base_url}{path}", json={"text": "x"}, timeout=5.0)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Courtyard-Identity")
    assert client.get("/notes").json() == []  # nothing was stored


def test_an_expired_or_foreign_assertion_gets_a_401(client: httpx.Client, platform: Any) -> None:
    expired = platform.minter.mint(aud="notes", iat=1_000_000, exp=1_000_060)
    response = client.get("/", headers={"Courtyard-Identity": expired})
    assert response.status_code == 401
    assert response.json()["detail"].endswith("expired")
    assert client.get("/", headers=platform.headers("expenses")).status_code == 401


def test_the_health_check_needs_no_assertion(client: httpx.Client) -> None:
    response = httpx.get(f"{client.base_url}/healthz", timeout=5.0)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_healthz_answers_ok(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_version_reports_the_constant_and_the_revision(client: httpx.Client) -> None:
    assert client.get("/version").json() == {
        "app": "notes",
        "version": "1.0.0",
        "revision": REVISION,
    }


def test_a_changed_version_constant_is_served(
    start_app: Callable[..., Any], tmp_path: Path, platform: Any
) -> None:
    # What the platform's redeploy tests do: edit VERSION, deploy, expect the new one.
    changed = tmp_path / "changed"
    changed.mkdir()
    source = (APP_DIR / "app.py").read_text()
    edited, count = re.subn(r'^VERSION = ".*"$', 'VERSION = "2.0.0"', source, flags=re.M)
    assert count == 1
    (changed / "app.py").write_text(edited)

    app = start_app(changed)
    headers = platform.headers("notes")
    assert (
        httpx.get(f"{app.url}/version", headers=headers, timeout=5.0).json()["version"] == "2.0.0"
    )


def test_a_form_post_adds_a_note_and_redirects_under_the_prefix(client: httpx.Client) -> None:
    response = client.post(
        "/notes", data={"text": "Rotate <keys>"}, headers={"X-Forwarded-Prefix": PREFIX}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"{PREFIX}/"

    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "<li>Rotate &lt;keys&gt;</li>" in page.text
    # Relative links and form action, so the page works behind any prefix.
    assert 'action="notes"' in page.text
    assert 'href="version"' in page.text


def test_a_json_post_adds_a_note(client: httpx.Client) -> None:
    response = client.post("/notes", json={"text": "  Renew the certificate  "})
    assert response.status_code == 201
    note = response.json()
    assert note["text"] == "Renew the certificate"
    assert client.get("/notes").json() == [note]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"text": ""}}, 422),
        ({"json": ["text"]}, 422),
        ({"data": {"other": "x"}}, 422),
        ({"json": {"text": "x" * 501}}, 422),
        ({"content": "{oops", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": "hello", "headers": {"Content-Type": "text/plain"}}, 415),
    ],
)
def test_a_bad_post_gets_a_problem_and_stores_nothing(
    client: httpx.Client, kwargs: dict[str, object], status: int
) -> None:
    response = client.post("/notes", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert response.json()["detail"]
    assert client.get("/notes").json() == []


def test_unknown_paths_and_methods_get_problems(client: httpx.Client) -> None:
    assert client.get("/nope").status_code == 404
    response = client.delete("/notes")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


def test_one_connection_carries_several_requests(
    start_app: Callable[..., Any], platform: Any
) -> None:
    app = start_app()
    headers = {"Content-Type": "application/json", **platform.headers("notes")}
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    try:
        sockets = []
        for body in ("a", "b"):
            # A POST body is read in full, so the next request on the connection parses.
            connection.request("POST", "/notes", f'{{"text": "{body}"}}', headers)
            created = connection.getresponse()
            assert (created.status, created.read()[:1]) == (201, b"{")
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert (response.version, response.read()) == (11, b'{"status": "ok"}')
            sockets.append(connection.sock)
        assert sockets[0] is not None
        assert all(sock is sockets[0] for sock in sockets)
    finally:
        connection.close()


def test_sigterm_stops_it_with_exit_code_0_after_logging_requests(
    start_app: Callable[..., Any], platform: Any
) -> None:
    app = start_app()
    headers = platform.headers("notes")
    with httpx.Client(base_url=app.url, timeout=5.0, headers=headers) as idle_keep_alive:
        idle_keep_alive.get("/version")

        assert app.stop() == 0
    assert '"GET /version HTTP/1.1" 200' in app.stdout.read_text()
