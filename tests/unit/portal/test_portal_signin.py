"""Sign-in and sign-out through the portal's pages: cookies, generic failures, throttling,
the TOTP step, open-redirect defence and login CSRF."""

from __future__ import annotations

import pyotp
import pytest

GENERIC = "Incorrect email or password."


async def test_login_form_is_accessible_and_sets_the_csrf_cookie(portal):
    client = portal.client()
    response = await client.get("/login")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = portal.page(response)
    portal.assert_accessible(page)
    assert page.field("email")["autocomplete"] == "username"
    assert page.field("password")["autocomplete"] == "current-password"
    assert page.field("csrf")["type"] == "hidden"
    assert page.field("next")["value"] == "/"
    assert page.buttons == ["Sign in"]
    header = portal.cookie_header(response, "courtyard_csrf")
    assert {"httponly", "samesite=strict"} <= portal.cookie_attributes(header)
    assert header.split(";")[0] == f"courtyard_csrf={page.value('csrf')}"


async def test_login_sets_the_session_cookie_and_redirects(portal):
    client = portal.client()
    response = await portal.post_login(client, portal.ADA, next_path="/apps/expenses/?q=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/apps/expenses/?q=1"
    header = portal.cookie_header(response, "courtyard_session")
    attributes = portal.cookie_attributes(header)
    assert {"httponly", "path=/", "samesite=lax"} <= attributes
    assert "secure" not in attributes
    assert not any(a.startswith("domain") for a in attributes)
    cookie = header.split(";")[0].partition("=")[2]
    principal = await portal.iam.authenticate_session(cookie)
    assert principal is not None
    assert principal.email == portal.ADA
    # The session remembers where it came from (the gateway's X-Forwarded-For first hop).
    sessions = await portal.iam.list_sessions(portal.ADA)
    assert [(s.client, s.user_agent) for s in sessions] == [("198.51.100.7", "TestBrowser/1.0")]


async def test_login_over_tls_uses_the_host_prefixed_secure_cookie(make_portal):
    portal = await make_portal(secure=True)
    client = portal.client()
    response = await portal.post_login(client, portal.ADA)
    assert response.status_code == 303
    header = portal.cookie_header(response, "__Host-courtyard_session")
    attributes = portal.cookie_attributes(header)
    # RFC 6265bis §4.1.3.2: Secure, Path=/ and no Domain.
    assert {"httponly", "path=/", "samesite=lax", "secure"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert "secure" in portal.cookie_attributes(portal.cookie_header(response, "courtyard_csrf"))
    assert (await client.get("/")).status_code == 200


async def test_unknown_user_and_wrong_password_get_the_same_answer(portal):
    unknown = await portal.post_login(portal.client("192.0.2.1"), "nobody@example.com", "x" * 20)
    wrong = await portal.post_login(portal.client("192.0.2.2"), portal.ADA, "wrong password 1")
    for response, email in ((unknown, "nobody@example.com"), (wrong, portal.ADA)):
        assert response.status_code == 401
        page = portal.page(response)
        portal.assert_accessible(page)
        assert page.alerts == 1
        assert GENERIC in page.text
        assert page.value("email") == email  # kept, so only the password needs typing again
        assert page.value("password") == ""
        assert "courtyard_session" not in response.headers.get("set-cookie", "")
    assert portal.page(unknown).text.replace("nobody@example.com", "") == portal.page(
        wrong
    ).text.replace(portal.ADA, "")


async def test_repeated_failures_are_throttled_with_retry_after(portal):
    client = portal.client()
    for _ in range(4):  # three free failures, then a delay starts
        assert (await portal.post_login(client, portal.ADA, "wrong password 1")).status_code == 401
    response = await portal.post_login(client, portal.ADA)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert "Too many attempts. Try again in 1 second." in portal.page(response).text
    await portal.clock.advance(1)
    assert (await portal.post_login(client, portal.ADA)).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
    ],
)
async def test_next_never_leaves_the_site(portal, target):
    client = portal.client()
    page = await portal.login_page(client, target)
    assert page.value("next") == "/"
    # A forged form field is checked again on the way out.
    csrf = page.value("csrf")
    data = {"email": portal.ADA, "password": portal.PASSWORD, "csrf": csrf, "next": target}
    response = await client.post("/login", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_signed_in_visitor_of_the_login_page_goes_on(portal):
    client = await portal.signed_in()
    response = await client.get("/login", params={"next": "/account"})
    assert response.status_code == 303
    assert response.headers["location"] == "/account"


async def test_login_without_the_csrf_cookie_or_with_a_mismatch_is_refused(portal):
    client = portal.client()
    page = await portal.login_page(client)
    csrf = page.value("csrf")
    data = {"email": portal.ADA, "password": portal.PASSWORD, "next": "/"}
    missing_field = await client.post("/login", data=data)
    mismatch = await client.post(
        "/login", data={**data, "csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}
    )
    stranger = portal.client()  # never fetched the form: no cookie
    no_cookie = await stranger.post("/login", data={**data, "csrf": csrf})
    for response in (missing_field, mismatch, no_cookie):
        assert response.status_code == 400
        assert "Your sign-in form expired; please try again." in portal.page(response).text
        assert "courtyard_session" not in response.headers.get("set-cookie", "")
    # The refusal hands out a fresh form that works.
    retry = portal.page(no_cookie).value("csrf")
    ok = await stranger.post("/login", data={**data, "csrf": retry})
    assert ok.status_code == 303


async def test_a_forged_double_submit_pair_is_refused(portal):
    # An attacker who can plant a cookie still cannot make one we signed.
    client = portal.client()
    forged = "1700000000.abc.def"
    client.cookies.set("courtyard_csrf", forged, domain="courtyard.test", path="/login")
    data = {"email": portal.ADA, "password": portal.PASSWORD, "csrf": forged, "next": "/"}
    assert (await client.post("/login", data=data)).status_code == 400


async def test_a_non_ascii_csrf_field_is_refused_not_an_error(portal):
    client = portal.client()
    await portal.login_page(client)
    data = {"email": portal.ADA, "password": portal.PASSWORD, "csrf": "é" * 40}
    assert (await client.post("/login", data=data)).status_code == 400
    signed = await portal.signed_in(portal.BOB)
    assert (await signed.post("/logout", data={"csrf": "é"})).status_code == 400


async def test_reloading_the_second_step_starts_over(portal):
    response = await portal.client().get("/login/totp", params={"next": "//evil.example"})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/"


async def test_an_old_sign_in_form_expires(portal):
    client = portal.client()
    page = await portal.login_page(client)
    await portal.clock.advance(2 * 3600 + 1)
    data = {"email": portal.ADA, "password": portal.PASSWORD, "csrf": page.value("csrf")}
    response = await client.post("/login", data=data)
    assert response.status_code == 400


async def enrol_totp(portal, client) -> tuple[str, list[str]]:
    """Set up TOTP through the account pages; returns the secret and the recovery codes."""
    response = await client.get("/account/totp")
    assert response.status_code == 200
    page = portal.page(response)
    portal.assert_accessible(page)
    assert "<svg" in response.text
    secret = portal.setup_key(response.text)
    code = pyotp.TOTP(secret).at(portal.clock.time())
    response = await client.post("/account/totp", data={"code": code, "csrf": page.value("csrf")})
    assert response.status_code == 200, response.text
    return secret, portal.recovery_codes(response.text)


async def test_totp_sign_in_takes_two_steps_and_a_code_works_once(portal):
    client = await portal.signed_in()
    secret, _ = await enrol_totp(portal, client)
    await portal.clock.advance(30)
    code = pyotp.TOTP(secret).at(portal.clock.time())

    browser = portal.client("203.0.113.5")
    first = await portal.post_login(browser, portal.ADA, next_path="/account")
    assert first.status_code == 200
    step = portal.page(first)
    portal.assert_accessible(step)
    assert step.forms == ["/login/totp"]
    assert step.field("code")["autocomplete"] == "one-time-code"
    assert step.field("code")["inputmode"] == "numeric"
    assert step.buttons == ["Verify"]
    assert "courtyard_session" not in first.headers.get("set-cookie", "")
    fields = {n: step.value(n) for n in ("pending", "csrf", "next")}
    ok = await browser.post("/login/totp", data={**fields, "code": code})
    assert ok.status_code == 303
    assert ok.headers["location"] == "/account"
    assert "courtyard_session=" in ok.headers["set-cookie"]

    # The same code again (a fresh password step) is refused: each time step counts once.
    again = portal.client("203.0.113.6")
    second = portal.page(await portal.post_login(again, portal.ADA))
    fields = {n: second.value(n) for n in ("pending", "csrf", "next")}
    replay = await again.post("/login/totp", data={**fields, "code": code})
    assert replay.status_code == 401
    assert "That code did not work" in portal.page(replay).text
    assert "courtyard_session" not in replay.headers.get("set-cookie", "")


async def test_a_recovery_code_signs_in_once(portal):
    client = await portal.signed_in()
    _, codes = await enrol_totp(portal, client)
    assert len(codes) >= 8

    async def second_step(code: str):
        browser = portal.client()
        page = portal.page(await portal.post_login(browser, portal.ADA))
        fields = {n: page.value(n) for n in ("pending", "csrf", "next")}
        return await browser.post("/login/totp", data={**fields, "code": code})

    assert (await second_step(codes[0])).status_code == 303
    assert (await second_step(codes[0])).status_code == 401
    assert (await second_step(codes[1])).status_code == 303


async def test_a_made_up_pending_proof_is_refused(portal):
    client = portal.client()
    page = await portal.login_page(client)
    data = {"pending": "made-up", "code": "123456", "csrf": page.value("csrf"), "next": "/"}
    response = await client.post("/login/totp", data=data)
    assert response.status_code == 401


async def test_logout_confirms_then_clears_the_cookie(portal):
    client = await portal.signed_in()
    cookie = client.cookies["courtyard_session"]
    response = await client.get("/logout")
    assert response.status_code == 200
    page = portal.page(response)
    portal.assert_accessible(page)
    assert "Sign out" in page.buttons
    response = await client.post("/logout", data={"csrf": page.value("csrf")})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    header = portal.cookie_header(response, "courtyard_session")
    assert {"max-age=0", "path=/", "httponly", "samesite=lax"} <= portal.cookie_attributes(header)
    assert await portal.iam.authenticate_session(cookie) is None
    launcher = await client.get("/")
    assert launcher.status_code == 303
    assert launcher.headers["location"] == "/login?next=/"


async def test_logout_with_a_wrong_csrf_token_keeps_the_session(portal):
    client = await portal.signed_in()
    cookie = client.cookies["courtyard_session"]
    for data in ({}, {"csrf": "not-the-token"}):
        response = await client.post("/logout", data=data)
        assert response.status_code == 400
    assert await portal.iam.authenticate_session(cookie) is not None


async def test_logout_without_a_session_just_goes_to_login(portal):
    response = await portal.client().get("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
