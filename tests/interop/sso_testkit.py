"""What the SSO acceptance tests share: a node with people, groups and OAuth clients made
through the public API, and a sign-in driven over plain HTTP as a browser without JavaScript.

Everything here talks to a real node (tests/e2e/harness.py) only over HTTP, with the admin
token for directory changes, so these tests check the contracts, not the implementation.
"""

from __future__ import annotations

import contextlib
import html.parser
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pyotp
from harness import NodeProcess

# A password the policy accepts (not common, not the e-mail, 8+ characters).
PASSWORD = "plum-orbit-quarry-71"
TOTP_PERIOD = 30


# -- nodes ----------------------------------------------------------------------------------


@contextlib.contextmanager
def running_node(
    data_dir: Path, *, extra: list[str] | None = None, workers: int = 1
) -> Iterator[NodeProcess]:
    """A started node, stopped (and its process group killed) afterwards."""
    node = NodeProcess(data_dir, workers=workers, extra=extra)
    try:
        yield node.start()
    finally:
        if node.process is not None:
            if node.process.poll() is None:
                node.stop()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.process.pid, signal.SIGKILL)


def check(response: httpx.Response, *expected: int) -> Any:
    """The JSON body of ``response``, failing with the whole answer when the status is off."""
    wanted = expected or (200, 201)
    assert response.status_code in wanted, (
        f"{response.request.method} {response.request.url} -> {response.status_code} "
        f"(wanted {wanted}): {response.text[:2000]}"
    )
    return response.json() if response.content else None


# -- directory -------------------------------------------------------------------------------


@dataclass
class Person:
    """A user made through the API, with what a test needs to sign in as them."""

    id: str
    email: str
    name: str
    password: str
    totp: TotpDevice | None = None


@dataclass
class TotpDevice:
    """An authenticator app: codes of the enrolled secret, each time step handed out once.

    The node refuses any step at or before the last one it accepted (RFC 6238 §5.2), and it
    accepts one step either side of now, so the next unused step within the window is always
    valid without waiting for the clock.
    """

    secret: str
    used: list[int] = field(default_factory=list)

    def step_now(self) -> int:
        return int(time.time() // TOTP_PERIOD)

    def code_at(self, step: int) -> str:
        return pyotp.TOTP(self.secret, interval=TOTP_PERIOD).at(step * TOTP_PERIOD)

    def next_code(self) -> str:
        """A code of a step not used before, within the node's window (now - 1 .. now + 1).

        Never now - 1 (the clock could move past the window before the node checks it).
        """
        now = self.step_now()
        step = max(now, max(self.used, default=now - 1) + 1)
        if step > now + 1:  # both usable steps are spent: wait until step - 1 is now
            time.sleep(max(0.0, (step - 1) * TOTP_PERIOD - time.time()) + 0.2)
        self.used.append(step)
        return self.code_at(step)

    def last_code(self) -> str:
        """The code accepted last (to try a replay)."""
        return self.code_at(self.used[-1])


def create_user(
    node: NodeProcess,
    email: str,
    name: str,
    *,
    password: str = PASSWORD,
    groups: tuple[str, ...] = (),
    totp: bool = False,
) -> Person:
    """POST /api/v1/users, then join ``groups`` (made when missing) and enrol TOTP if asked."""
    with node.api() as api:
        user = check(
            api.post("/api/v1/users", json={"email": email, "name": name, "password": password}),
            201,
        )
        person = Person(id=user["id"], email=email, name=name, password=password)
        for group in groups:
            add_member(api, group, person.id)
        if totp:
            person.totp = enroll_totp(api, person.id)
    return person


def add_member(api: httpx.Client, group: str, user_ref: str) -> None:
    """Make ``group`` if it does not exist, then PUT the user into it (idempotent)."""
    existing = api.get(f"/api/v1/groups/{group}")
    if existing.status_code == 404:
        check(api.post("/api/v1/groups", json={"name": group, "title": group.title()}), 201)
    else:
        check(existing, 200)
    check(api.put(f"/api/v1/groups/{group}/members/{user_ref}"), 200, 201, 204)


def enroll_totp(api: httpx.Client, user_ref: str) -> TotpDevice:
    """Begin TOTP enrolment, confirm it with a fresh code, and return the device."""
    begun = check(api.post(f"/api/v1/users/{user_ref}/totp"), 200, 201)
    secret = begun.get("secret")
    if not secret:  # only the otpauth:// URI came back: the secret is its query parameter
        uri = begun.get("uri") or begun.get("otpauthUri") or begun["provisioningUri"]
        secret = parse_qs(urlsplit(uri).query)["secret"][0]
    device = TotpDevice(secret=secret)
    confirmed = check(
        api.post(f"/api/v1/users/{user_ref}/totp/confirm", json={"code": device.next_code()}),
        200,
        201,
    )
    assert confirmed.get("recoveryCodes"), confirmed  # shown once, at confirmation
    return device


def register_client(
    node: NodeProcess,
    *,
    app: str,
    name: str,
    public: bool = False,
    redirect_uris: tuple[str, ...] = (),
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
    scopes: tuple[str, ...] | None = None,
    audience: tuple[str, ...] = ("courtyard",),
) -> tuple[str, str | None]:
    """POST /api/v1/clients; (client id, secret or None for a public client).

    ``scopes`` None leaves the node's default (openid profile email).
    """
    document: dict[str, Any] = {
        "app": app,
        "name": name,
        "public": public,
        "redirectUris": list(redirect_uris),
        "grantTypes": list(grant_types),
        "audience": list(audience),
    }
    if scopes is not None:
        document["scopes"] = list(scopes)
    with node.api() as api:
        body = check(api.post("/api/v1/clients", json=document), 201)
    return body["clientId"], body.get("clientSecret")


# -- the sign-in pages -------------------------------------------------------------------------


@dataclass
class Form:
    """One HTML form: where it posts and its named fields with their initial values."""

    action: str
    method: str
    fields: dict[str, str]


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._current = Form(
                action=values.get("action", ""),
                method=values.get("method", "get").lower(),
                fields={},
            )
            self.forms.append(self._current)
        elif (
            tag in {"input", "textarea", "select"}
            and self._current is not None
            and "name" in values
            and values.get("type") not in {"submit", "button"}
        ):
            self._current.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def forms_in(page: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(page)
    return parser.forms


def form_with(page: str, field_name: str) -> Form | None:
    """The first form that has a field called ``field_name`` (entities already decoded)."""
    return next((form for form in forms_in(page) if field_name in form.fields), None)


Status = Literal["ok", "totp_required", "failed", "throttled"]


@dataclass
class Attempt:
    """What one step of signing in produced, as a browser would see it."""

    status: Status
    response: httpx.Response
    url: str  # the page the form was on (for resolving its action)
    form: Form | None = None  # the TOTP form, for status "totp_required"

    @property
    def location(self) -> str:
        return self.response.headers.get("location", "")


class Browserless:
    """An httpx client that signs in through the portal's forms, keeping cookies.

    ``local_address`` binds the client socket to another loopback address (127.0.0.2, ...):
    the gateway overwrites X-Forwarded-For with the peer address, so this is how a test
    looks like many clients.
    """

    def __init__(self, base_url: str, *, local_address: str | None = None) -> None:
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        self.base_url = base_url
        self.http = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=30,
            follow_redirects=False,
            headers={"Accept": "text/html,application/xhtml+xml", "User-Agent": "courtyard-e2e"},
        )

    def __enter__(self) -> Browserless:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def post_form(self, page_url: str, form: Form, **values: str) -> httpx.Response:
        """Submit ``form`` (found on ``page_url``) with ``values`` over its initial fields.

        An ``Origin`` header goes along, as a browser sends with every form POST.
        """
        action = urljoin(page_url, form.action or page_url)
        return self.http.post(
            action,
            data={**form.fields, **values},
            headers={"Origin": self.base_url.rstrip("/")},
        )

    def login_page(self, next_path: str | None = None) -> tuple[str, Form]:
        """GET /login (with ``next``) and its password form."""
        params = {"next": next_path} if next_path is not None else None
        response = self.http.get("/login", params=params)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        form = form_with(response.text, "password")
        assert form is not None, f"no password form on /login: {response.text[:1000]}"
        assert "csrf" in form.fields, f"the login form has no csrf field: {form}"
        return str(response.url), form

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        next_path: str | None = None,
        override_next: str | None = None,
    ) -> Attempt:
        """The password step; ``override_next`` replaces the form's hidden ``next``."""
        url, form = self.login_page(next_path)
        values = {"email": email, "password": password}
        if override_next is not None:
            values["next"] = override_next
        return self._outcome(url, self.post_form(url, form, **values))

    def submit_totp(self, attempt: Attempt, code: str) -> Attempt:
        """The second step: POST /login/totp with the code and the pending proof."""
        assert attempt.status == "totp_required" and attempt.form is not None, attempt
        return self._outcome(attempt.url, self.post_form(attempt.url, attempt.form, code=code))

    def sign_in_fully(self, person: Person, *, next_path: str | None = None) -> Attempt:
        """Both steps as needed; fails unless the person ends up signed in."""
        attempt = self.sign_in(person.email, person.password, next_path=next_path)
        if attempt.status == "totp_required":
            assert person.totp is not None, "the node asks for TOTP of a user without it"
            attempt = self.submit_totp(attempt, person.totp.next_code())
        assert attempt.status == "ok", describe(attempt)
        return attempt

    def _outcome(self, url: str, response: httpx.Response) -> Attempt:
        if response.status_code == 429:
            return Attempt("throttled", response, url)
        if response.is_redirect:
            target = urljoin(url, response.headers["location"])
            if urlsplit(target).path == "/login/totp":  # the TOTP step as its own page
                page = self.http.get(target)
                form = form_with(page.text, "code")
                assert form is not None, f"no code form at {target}: {page.text[:1000]}"
                return Attempt("totp_required", response, target, form)
            if urlsplit(target).path == "/login":
                return Attempt("failed", response, url)
            return Attempt("ok", response, url)
        totp_form = form_with(response.text, "code")
        if response.status_code == 200 and totp_form is not None and "pending" in totp_form.fields:
            return Attempt("totp_required", response, url, totp_form)
        return Attempt("failed", response, url)


def describe(attempt: Attempt) -> str:
    response = attempt.response
    return (
        f"{attempt.status}: {response.request.method} {response.request.url} -> "
        f"{response.status_code} location={attempt.location!r} body={response.text[:800]!r}"
    )


def follow_to(client: httpx.Client, url: str, stop_prefix: str, *, limit: int = 10) -> str:
    """Follow redirects from ``url`` by hand until a Location starts with ``stop_prefix``.

    Used for /oauth2/authorize: the redirect_uri need not answer (nothing listens there).
    """
    for _ in range(limit):
        response = client.get(url)
        assert response.is_redirect, (
            f"GET {url} -> {response.status_code}, wanted a redirect: {response.text[:800]}"
        )
        url = urljoin(url, response.headers["location"])
        if url.startswith(stop_prefix):
            return url
    raise AssertionError(f"no redirect to {stop_prefix} within {limit} hops (last: {url})")
