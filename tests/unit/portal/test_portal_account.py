"""The account pages: sessions, API tokens, TOTP enrolment, all behind session-bound CSRF."""

from __future__ import annotations

import pyotp


async def test_account_without_a_session_sends_to_login(portal):
    client = portal.client()
    for method, path in (
        ("GET", "/account"),
        ("POST", "/account/tokens"),
        ("POST", "/account/sessions/x/revoke"),
        ("POST", "/account/totp"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login?next=/account"
    response = await client.get("/account/totp")
    assert response.headers["location"] == "/login?next=/account/totp"


async def test_the_account_page_shows_profile_sessions_and_no_store(portal):
    client = await portal.signed_in()
    await portal.signed_in(address="203.0.113.9")
    response = await client.get("/account")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = portal.page(response)
    portal.assert_accessible(page)
    assert "Ada Lovelace" in page.text
    assert portal.ADA in page.text
    assert "198.51.100.7" in page.text
    assert "203.0.113.9" in page.text
    assert page.text.count("(this device)") == 1
    assert page.field("name")["id"] == "token-name"
    assert "/account/totp" in page.links


async def test_revoking_another_session_signs_it_out(portal):
    client = await portal.signed_in()
    other = await portal.signed_in(address="203.0.113.9")
    sessions = await portal.iam.list_sessions(portal.ADA)
    target = next(s for s in sessions if s.client == "203.0.113.9")
    csrf = await portal.csrf(client)
    response = await client.post(f"/account/sessions/{target.id}/revoke", data={"csrf": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/account?done=session-revoked"
    assert (
        "The session was signed out."
        in portal.page(await client.get(response.headers["location"])).text
    )
    assert (await other.get("/")).headers["location"] == "/login?next=/"
    assert (await client.get("/")).status_code == 200


async def test_revoking_this_session_clears_the_cookie(portal):
    client = await portal.signed_in()
    (session,) = await portal.iam.list_sessions(portal.ADA)
    csrf = await portal.csrf(client)
    response = await client.post(f"/account/sessions/{session.id}/revoke", data={"csrf": csrf})
    assert response.headers["location"] == "/login"
    assert "max-age=0" in portal.cookie_attributes(
        portal.cookie_header(response, "courtyard_session")
    )


async def test_someone_elses_session_cannot_be_revoked(portal):
    bob = await portal.signed_in(portal.BOB, address="203.0.113.9")
    client = await portal.signed_in()
    (bobs,) = await portal.iam.list_sessions(portal.BOB)
    csrf = await portal.csrf(client)
    response = await client.post(f"/account/sessions/{bobs.id}/revoke", data={"csrf": csrf})
    assert response.status_code == 404
    assert (await bob.get("/")).status_code == 200


async def test_posts_without_the_session_csrf_token_are_refused(portal):
    client = await portal.signed_in()
    other = await portal.signed_in(portal.BOB)
    bobs_token = await portal.csrf(other)  # valid, but for another session
    for data in (
        {"name": "ci", "expires_days": "30"},
        {"name": "ci", "expires_days": "30", "csrf": bobs_token},
    ):
        response = await client.post("/account/tokens", data=data)
        assert response.status_code == 400
        page = portal.page(response)
        assert page.alerts == 1
        assert "Your form expired" in page.text
    assert await portal.iam.list_tokens(portal.ADA) == []


async def test_a_token_is_shown_once_and_can_be_revoked(portal):
    client = await portal.signed_in()
    csrf = await portal.csrf(client)
    response = await client.post(
        "/account/tokens", data={"name": "ci", "expires_days": "30", "csrf": csrf}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = portal.page(response)
    portal.assert_accessible(page)
    token = page.field("token")["value"]
    assert "shown only once" in page.text
    principal = await portal.iam.authenticate_token(token)
    assert principal is not None and principal.email == portal.ADA
    (info,) = await portal.iam.list_tokens(portal.ADA)
    assert info.name == "ci"
    assert info.expires_at == portal.clock.time() + 30 * 86400

    account = await client.get("/account")
    assert token not in account.text
    assert "ci" in portal.page(account).text
    response = await client.post(f"/account/tokens/{info.id}/revoke", data={"csrf": csrf})
    assert response.status_code == 303
    assert await portal.iam.authenticate_token(token) is None
    assert "revoked" in portal.page(await client.get("/account")).text


async def test_a_bad_token_form_is_explained(portal):
    client = await portal.signed_in()
    csrf = await portal.csrf(client)
    response = await client.post(
        "/account/tokens", data={"name": "", "expires_days": "9999", "csrf": csrf}
    )
    assert response.status_code == 400
    page = portal.page(response)
    portal.assert_accessible(page)
    assert page.alerts == 1
    assert "Enter a token name" in page.text
    assert "from 1 to 365" in page.text
    assert "#token-name" in page.links


async def test_someone_elses_token_cannot_be_revoked(portal):
    _, bobs = await portal.iam.issue_token(None, portal.BOB, "bob's")
    client = await portal.signed_in()
    csrf = await portal.csrf(client)
    response = await client.post(f"/account/tokens/{bobs.id}/revoke", data={"csrf": csrf})
    assert response.status_code == 404
    (still,) = await portal.iam.list_tokens(portal.BOB)
    assert still.revoked_at is None


async def test_totp_enrolment_shows_a_qr_code_and_recovery_codes(portal):
    client = await portal.signed_in()
    response = await client.get("/account/totp")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "<svg" in response.text
    assert "otpauth://totp/" in response.text
    page = portal.page(response)
    portal.assert_accessible(page)
    assert page.field("code")["autocomplete"] == "one-time-code"
    secret = portal.setup_key(response.text)
    csrf = page.value("csrf")

    wrong = await client.post("/account/totp", data={"code": "000000", "csrf": csrf})
    assert wrong.status_code == 400
    assert portal.page(wrong).alerts == 1
    assert "<svg" not in wrong.text  # the key is not shown again

    code = pyotp.TOTP(secret).at(portal.clock.time())
    done = await client.post("/account/totp", data={"code": code, "csrf": csrf})
    assert done.status_code == 200
    assert done.headers["cache-control"] == "no-store"
    assert len(portal.recovery_codes(done.text)) >= 8
    assert (await portal.iam.get_user(portal.ADA)).totp_enabled
    # Once on, the set-up page sends back to the account page.
    assert (await client.get("/account/totp")).headers["location"] == "/account"


async def test_totp_can_be_turned_off_after_a_confirmation(portal):
    client = await portal.signed_in()
    response = await client.get("/account/totp")
    secret = portal.setup_key(response.text)
    csrf = portal.page(response).value("csrf")
    code = pyotp.TOTP(secret).at(portal.clock.time())
    await client.post("/account/totp", data={"code": code, "csrf": csrf})
    confirm = await client.get("/account/totp/disable")
    assert confirm.status_code == 200
    portal.assert_accessible(portal.page(confirm))
    assert (await client.post("/account/totp/disable", data={})).status_code == 400
    response = await client.post("/account/totp/disable", data={"csrf": csrf})
    assert response.headers["location"] == "/account?done=totp-disabled"
    assert not (await portal.iam.get_user(portal.ADA)).totp_enabled


async def test_the_stylesheet_is_served(portal):
    response = await portal.client().get("/portal/static/portal.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in response.text
