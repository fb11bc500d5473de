"""The status board, started as a real ``node`` process on a free loopback port; it fetches
the JWKS from the stand-in platform (examples/conftest.py) and verifies assertions itself."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from courtyard.sdk.testing import IdentityMinter

APP_DIR = Path(__file__).parent
NODE = shutil.which("node")
REVISION = "rev-test-1"  # what examples/conftest.py gives the app
PREFIX = "/apps/status-board"

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js on PATH")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def start_app(launch: Any) -> Callable[[], Any]:
    """Start the app as the platform would."""
    assert NODE is not None
    return lambda: launch([NODE, "server.js"], APP_DIR, "status-board")


def test_the_page_greets_the_caller_by_name_escaped(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<p class="greeting">Hello, Dana &#60;Tester&#62;</p>' in page.text


def test_me_says_who_the_platform_says_is_calling(client: httpx.Client, platform: Any) -> None:
    me = client.get("/api/me").json()
    assert me == {
        "greeting": "Hello, Dana <Tester>",
        "sub": "u_00000000000000d1",
        "email": "dana@example.com",
        "name": "Dana <Tester>",
        "groups": [],
        "roles": [],
        "act": None,
    }
    headers = platform.headers("status-board", name="Li", groups=["ops"], act="svc:ledger")
    me = client.get("/api/me", headers=headers).json()
    assert (me["name"], me["groups"], me["act"]) == ("Li", ["ops"], "svc:ledger")


def test_an_rs256_assertion_verifies_too(client: httpx.Client, platform: Any) -> None:
    rsa = IdentityMinter(platform.url, "status-board", alg="RS256")
    platform.jwks = {"keys": platform.jwks["keys"] + rsa.jwks()["keys"]}
    # Health checks need no keys, so this request makes the app's first fetch: both keys.
    assert client.get("/api/me", headers=rsa.headers(name="Ravi")).json()["name"] == "Ravi"


@pytest.mark.parametrize("path", ["/", "/api/status", "/api/me", "/nope"])
def test_a_request_without_an_assertion_gets_a_401_problem(client: httpx.Client, path: str) -> None:
    response = httpx.get(f"{client.base_url}{path}", timeout=5.0)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Courtyard-Identity")
    assert response.json()["detail"] == "the request carries no Courtyard-Identity assertion"


def _refusal(client: httpx.Client, token: str) -> str:
    response = client.get("/api/me", headers={"Courtyard-Identity": token})
    assert response.status_code == 401, response.text
    detail: str = response.json()["detail"]
    return detail.removeprefix("invalid Courtyard-Identity assertion: ")


def test_bad_assertions_get_a_401_saying_why(client: httpx.Client, platform: Any) -> None:
    minter = platform.minter
    mint = functools.partial(minter.mint, aud="status-board")
    good = {"iss": platform.url, "aud": "status-board", "sub": "u_x"}
    now = int(time.time())
    assert _refusal(client, mint(aud="notes")) == 'not meant for "status-board" (aud)'
    assert _refusal(client, mint(iss="http://evil.test")).endswith("(iss)")
    assert _refusal(client, mint(iat=now - 600, exp=now - 540)) == "expired"
    assert _refusal(client, mint(nbf=now + 600)).startswith("not valid yet")
    assert _refusal(client, minter.sign({**good, "iat": now})) == "missing or invalid exp or iat"
    assert _refusal(client, minter.sign({**good}, {"typ": "at+jwt"})).endswith("(typ)")
    assert _refusal(client, "a.b") == "not a JWT"
    assert _refusal(client, "a.b.c") == "not a JWT"
    header, _, signature = mint().split(".")
    tampered = mint(sub="u_admin", roles=["platform-admin"]).split(".")[1]
    assert _refusal(client, f"{header}.{tampered}.{signature}") == "bad signature"


def test_alg_none_and_hs256_are_refused(client: httpx.Client, platform: Any) -> None:
    now = int(time.time())
    claims = {"iss": platform.url, "aud": "status-board", "sub": "u_x", "iat": now, "exp": now + 60}
    body = _b64(claims)
    kid = platform.minter.kid
    assert _refusal(client, f"{_b64({'alg': 'none', 'kid': kid})}.{body}.") == (
        'algorithm "none" is not allowed'
    )
    public = json.dumps(platform.jwks["keys"][0]).encode()
    signing_input = f"{_b64({'alg': 'HS256', 'kid': kid})}.{body}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert _refusal(client, forged) == 'algorithm "HS256" is not allowed'


def test_an_unknown_kid_refetches_once_then_is_rate_limited(
    client: httpx.Client, platform: Any
) -> None:
    assert client.get("/api/me").status_code == 200
    assert platform.jwks_requests == 1
    forger = IdentityMinter(platform.url, "status-board")
    for _ in range(20):
        assert _refusal(client, forger.mint()) == "unknown key"
    # The JWKS was fetched moments ago: a flood of unknown kids does not refetch it.
    assert platform.jwks_requests == 1


def test_the_health_check_needs_no_assertion_nor_the_platform(
    client: httpx.Client, platform: Any
) -> None:
    response = httpx.get(f"{client.base_url}/healthz", timeout=5.0)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert platform.jwks_requests == 0


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
    start_app: Callable[[], Any], platform: Any
) -> None:
    app = start_app()
    headers = platform.headers("status-board")
    with httpx.Client(base_url=app.url, timeout=5.0, headers=headers) as idle_keep_alive:
        idle_keep_alive.get("/api/status")

        started = time.monotonic()
        assert app.stop() == 0
        # An idle keep-alive connection must not hold shutdown until the grace period ends.
        assert time.monotonic() - started < 3.0
    assert '"GET /api/status HTTP/1.1" 200' in app.stdout.read_text()
