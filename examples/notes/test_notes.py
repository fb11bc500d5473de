"""The notes app, started as a real process on a free loopback port."""

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
    return lambda app_dir=APP_DIR: launch([sys.executable, "app.py"], app_dir)


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
    start_app: Callable[..., Any], tmp_path: Path
) -> None:
    # What the platform's redeploy tests do: edit VERSION, deploy, expect the new one.
    changed = tmp_path / "changed"
    changed.mkdir()
    source = (APP_DIR / "app.py").read_text()
    edited, count = re.subn(r'^VERSION = ".*"$', 'VERSION = "2.0.0"', source, flags=re.M)
    assert count == 1
    (changed / "app.py").write_text(edited)

    app = start_app(changed)
    assert httpx.get(f"{app.url}/version", timeout=5.0).json()["version"] == "2.0.0"


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


def test_one_connection_carries_several_requests(start_app: Callable[..., Any]) -> None:
    app = start_app()
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    try:
        sockets = []
        for body in ("a", "b"):
            # A POST body is read in full, so the next request on the connection parses.
            connection.request(
                "POST", "/notes", f'{{"text": "{body}"}}', {"Content-Type": "application/json"}
            )
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
    start_app: Callable[..., Any],
) -> None:
    app = start_app()
    with httpx.Client(base_url=app.url, timeout=5.0) as idle_keep_alive:
        idle_keep_alive.get("/version")

        assert app.stop() == 0
    assert '"GET /version HTTP/1.1" 200' in app.stdout.read_text()
