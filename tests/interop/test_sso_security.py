"""Security acceptance of single sign-on on a whole node: open redirects after sign-in,
password guessing, one-time codes, and what the gateway does for apps that are not public.

Rules come from the OWASP Unvalidated Redirects and Forwards Cheat Sheet, the OWASP
Authentication Cheat Sheet ("Protect Against Automated Attacks"), RFC 6238 §5.2 and
DESIGN.md ("Identity to apps").
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from harness import NodeProcess, wait_for, write_app
from joserfc import jwt
from joserfc.jwk import KeySet

from interop.sso_testkit import PASSWORD, Browserless, create_user, describe, running_node

pytestmark = pytest.mark.slow

# The node setting that caps the login throttle's delay (default 15 min), short for tests.
THROTTLE_CAP = 3.0
THROTTLE_FLAGS = ["--login-max-delay", "3"]
# docs/iam.md: 3 failures per account are free, the 4th is let through and sets the first
# delay; the delay never drops below 1 s, so at most one more guess per second gets through.
FREE_FAILURES = 3

BAD_NEXTS = [
    "//evil.example",
    "/\\evil.example",
    "https:evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "https://evil.example/",
    "/\t/evil.example",
    "javascript:alert(1)",
]

ECHO_APP = '''
"""Answers the Courtyard-Identity header it was given, so tests can read the assertion."""
import http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"path": self.path,
                           "identity": self.headers.get_all("Courtyard-Identity") or []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
'''


def lands_on_root(node: NodeProcess, location: str) -> bool:
    """True when ``location`` (a Location header) is this node's "/" and nothing else."""
    target = urlsplit(urljoin(node.url + "/login", location))
    origin = urlsplit(node.url)
    return (target.scheme, target.netloc, target.path) == (origin.scheme, origin.netloc, "/")


def test_next_never_leaves_the_origin(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        person = create_user(node, "rita@example.com", "Rita Redirect")
        for value in BAD_NEXTS:
            # As the link arrives (?next= on /login), and as a forged form would post it.
            with Browserless(node.url) as browser:
                attempt = browser.sign_in(person.email, person.password, next_path=value)
                assert attempt.status == "ok", describe(attempt)
                assert lands_on_root(node, attempt.location), (value, attempt.location)
            with Browserless(node.url) as browser:
                attempt = browser.sign_in(person.email, person.password, override_next=value)
                assert attempt.status == "ok", describe(attempt)
                assert lands_on_root(node, attempt.location), (value, attempt.location)
        # A same-origin path is kept, query and all.
        with Browserless(node.url) as browser:
            attempt = browser.sign_in(person.email, person.password, next_path="/apps/x/?a=1")
            assert attempt.status == "ok", describe(attempt)
            assert urljoin(node.url, attempt.location) == f"{node.url}/apps/x/?a=1"


def test_password_guessing_is_throttled_and_the_user_still_gets_in(tmp_path: Path) -> None:
    with running_node(tmp_path / "node", extra=THROTTLE_FLAGS) as node:
        person = create_user(node, "gus@example.com", "Gus Guessed")
        statuses: list[str] = []
        retry_after: list[float] = []
        started = time.monotonic()
        # 100 guesses from 100 addresses: the per-client counter never trips, so whatever
        # stops them is the per-account counter. (The gateway overwrites X-Forwarded-For with
        # the peer address, so the source address is what has to change.)
        for i in range(100):
            with Browserless(node.url, local_address=f"127.0.0.{2 + i}") as browser:
                attempt = browser.sign_in(person.email, f"wrong-guess-{i:03d}")
            assert attempt.status in {"failed", "throttled"}, describe(attempt)
            statuses.append(attempt.status)
            if attempt.status == "throttled":
                header = attempt.response.headers.get("retry-after")
                assert header is not None, "a 429 says when to come back (RFC 6585 §4)"
                retry_after.append(float(header))
        elapsed = time.monotonic() - started

        assert statuses[: FREE_FAILURES + 1] == ["failed"] * (FREE_FAILURES + 1), statuses
        let_through = statuses.count("failed")
        assert let_through <= FREE_FAILURES + 1 + math.ceil(elapsed), (elapsed, statuses)
        assert statuses.count("throttled") >= 100 - (FREE_FAILURES + 1 + math.ceil(elapsed))
        assert retry_after and max(retry_after) <= THROTTLE_CAP + 1, retry_after

        # Even a correct password waits out the account's delay (it is the account that is
        # under attack), from any address; then the real user gets in.
        time.sleep(THROTTLE_CAP + 0.5)
        with Browserless(node.url) as browser:
            attempt = browser.sign_in(person.email, PASSWORD)
            assert attempt.status == "ok", describe(attempt)
            assert browser.http.get("/").status_code == 200  # the launcher, signed in


def test_a_totp_code_works_once(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        person = create_user(node, "tom@example.com", "Tom Totp", totp=True)
        assert person.totp is not None
        with Browserless(node.url) as first:
            step = first.sign_in(person.email, person.password)
            assert step.status == "totp_required", describe(step)
            code = person.totp.next_code()
            done = first.submit_totp(step, code)
            assert done.status == "ok", describe(done)
            # The same form again (same pending proof, same code): refused.
            again = first.submit_totp(step, code)
            assert again.status != "ok", describe(again)
        with Browserless(node.url) as second:
            step = second.sign_in(person.email, person.password)
            assert step.status == "totp_required", describe(step)
            replay = second.submit_totp(step, person.totp.last_code())
            assert replay.status != "ok", describe(replay)
            assert "courtyard_session" not in second.http.cookies
        with Browserless(node.url) as third:  # a fresh code still works
            step = third.sign_in(person.email, person.password)
            done = third.submit_totp(step, person.totp.next_code())
            assert done.status == "ok", describe(done)


def deploy_echo(node: NodeProcess, folder: Path, name: str, access: str) -> None:
    write_app(folder, name, access=access, health="{path: /}")
    (folder / "app.py").write_text(ECHO_APP)
    node.cli("deploy", str(folder))


def test_gateway_guards_private_apps(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        deploy_echo(node, tmp_path / "src" / "ledger", "ledger", '{allow: ["group:finance"]}')
        member = create_user(node, "fay@example.com", "Fay Finance", groups=("finance",))
        outsider = create_user(node, "olaf@example.com", "Olaf Outside")

        with httpx.Client(base_url=node.url, timeout=10) as anonymous:
            page = anonymous.get("/apps/ledger/report?x=1", headers={"Accept": "text/html"})
            assert page.status_code == 302, page.text[:500]
            location = httpx.URL(node.url).join(page.headers["location"])
            assert location.path == "/login"
            assert location.params["next"] == "/apps/ledger/report?x=1"
            api = anonymous.get("/apps/ledger/report", headers={"Accept": "application/json"})
            assert api.status_code == 401
            assert api.headers.get("www-authenticate", "").lower().startswith("bearer")

        with Browserless(node.url) as browser:
            browser.sign_in_fully(outsider)
            refused = browser.http.get("/apps/ledger/")
            assert refused.status_code == 403, refused.text[:500]

        with Browserless(node.url) as browser:
            browser.sign_in_fully(member)
            # A client-sent assertion is dropped; the gateway adds exactly one of its own.
            forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
            answer = browser.http.get("/apps/ledger/whoami", headers={"Courtyard-Identity": forged})
            assert answer.status_code == 200, answer.text[:500]
            identity: list[str] = answer.json()["identity"]
            assert len(identity) == 1 and identity[0] != forged, identity
            claims = verify_assertion(node, identity[0], app="ledger")
            assert claims["sub"] == member.id
            assert claims["email"] == member.email
            assert claims["name"] == member.name
            assert "finance" in claims["groups"]


def verify_assertion(node: NodeProcess, token: str, *, app: str) -> dict[str, Any]:
    """Check a Courtyard-Identity JWT as an app would: JWKS signature, iss, aud, ttl <= 60."""
    jwks = wait_for(lambda: httpx.get(f"{node.url}/oauth2/jwks", timeout=5).json(), 10, "the JWKS")
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": node.url},
        aud={"essential": True, "value": app},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(decoded.claims)
    claims: dict[str, Any] = decoded.claims
    assert claims["exp"] - claims["iat"] <= 60
    return claims
