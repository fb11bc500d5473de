"""The provider end to end over HTTP (in-process ASGI): Authlib's client doing code + PKCE,
and the attacks RFC 9700 says a provider must stop."""

from __future__ import annotations

import base64
import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet

from courtyard.core import FakeClock
from courtyard.iam._oidc import OidcProvider
from courtyard.iam._oidc_models import ClientInfo

with warnings.catch_warnings():  # Authlib warns that its httpx module is deprecated
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from .conftest import ADMIN, ISSUER, LOGOUT_REDIRECT, REDIRECT, FakeAudit, FakeUsers, pkce_pair

COOKIE = "courtyard_session"


async def register(
    provider: OidcProvider, *, public: bool = False, **kwargs: Any
) -> tuple[ClientInfo, str | None]:
    return await provider.register_client(
        ADMIN,
        "notes",
        name="Notes",
        public=public,
        redirect_uris=[REDIRECT],
        post_logout_redirect_uris=[LOGOUT_REDIRECT],
        **kwargs,
    )


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def authorize(
    http: httpx.AsyncClient,
    client_id: str,
    cookie: str | None,
    challenge: str | None,
    **extra: str,
) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "state": "st-1",
        "nonce": "n-1",
        **extra,
    }
    if challenge is not None:
        params.setdefault("code_challenge", challenge)
        params.setdefault("code_challenge_method", "S256")
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    return await http.get("/oauth2/authorize", params=params, headers=headers)


async def code_for(http: httpx.AsyncClient, users: FakeUsers, client_id: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    response = await authorize(http, client_id, users.sign_in(), challenge)
    assert response.status_code == 302, response.text
    return query(response.headers["location"])["code"], verifier


async def exchange(
    http: httpx.AsyncClient, client: ClientInfo, secret: str | None, code: str, verifier: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client.client_id,
    }
    if secret is not None:
        form["client_secret"] = secret
    return await http.post("/oauth2/token", data=form)


async def introspect(http: httpx.AsyncClient, client: ClientInfo, secret: str, token: str) -> Any:
    response = await http.post(
        "/oauth2/introspect", data={"token": token}, auth=(client.client_id, secret)
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- discovery and keys ------------------------------------------------------------------------


async def test_discovery_names_every_endpoint(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/oauth2/authorize"
    assert doc["jwks_uri"] == f"{ISSUER}/oauth2/jwks"
    assert doc["end_session_endpoint"] == f"{ISSUER}/oauth2/logout"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["id_token_signing_alg_values_supported"]) == {"ES256", "RS256"}
    assert "offline_access" in doc["scopes_supported"]


async def test_jwks_is_cacheable_and_public(http: httpx.AsyncClient) -> None:
    response = await http.get("/oauth2/jwks")
    assert response.headers["cache-control"] == "public, max-age=300"
    assert all("d" not in key for key in response.json()["keys"])


# -- the happy path, driven by Authlib -----------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_authlib_code_flow_with_pkce(
    app: FastAPI,
    http: httpx.AsyncClient,
    provider: OidcProvider,
    users: FakeUsers,
    audit: FakeAudit,
    alg: str,
) -> None:
    info, secret = await register(provider, id_token_alg=alg)
    client = AsyncOAuth2Client(
        info.client_id,
        secret,
        scope="openid profile email",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        transport=httpx.ASGITransport(app=app),
    )
    async with client:
        verifier = generate_token(48)
        url, state = client.create_authorization_url(
            f"{ISSUER}/oauth2/authorize", code_verifier=verifier, nonce="n-42"
        )
        assert "code_challenge_method=S256" in url
        login = await http.get(url)
        assert login.status_code == 302
        assert login.headers["location"].startswith("/login?next=%2Foauth2%2Fauthorize%3F")
        answer = await http.get(url, headers={"Cookie": f"{COOKIE}={users.sign_in()}"})
        location = answer.headers["location"]
        assert location.startswith(REDIRECT) and query(location)["state"] == state
        assert query(location)["iss"] == ISSUER
        token = await client.fetch_token(
            f"{ISSUER}/oauth2/token", authorization_response=location, code_verifier=verifier
        )
        keys = KeySet.import_key_set((await http.get("/oauth2/jwks")).json())
        id_token = jwt.decode(token["id_token"], keys, algorithms=[alg])
        assert id_token.header["alg"] == alg
        claims = id_token.claims
        assert claims["iss"] == ISSUER and claims["aud"] == info.client_id
        assert claims["nonce"] == "n-42" and claims["sub"] == "u_0123456789abcdef"
        assert claims["email"] == "alice@example.com" and "at_hash" in claims
        access = jwt.decode(token["access_token"], keys, algorithms=["ES256"])
        assert access.header["typ"] == "at+jwt"
        assert access.claims["aud"] == ["courtyard"]
        assert access.claims["client_id"] == info.client_id
        assert access.claims["roles"] == ["auditor", "owner"]
        me = await client.get(f"{ISSUER}/oauth2/userinfo")
        assert me.json() == {
            "sub": "u_0123456789abcdef",
            "name": "Alice",
            "email": "alice@example.com",
        }
        refreshed = await client.refresh_token(f"{ISSUER}/oauth2/token")
        assert refreshed["refresh_token"] != token["refresh_token"]
    issued = [e for e in audit.events if e.action == "auth.token.issue"]
    assert [e.details["grant"] for e in issued] == ["authorization_code", "refresh_token"]
    secrets = (token["access_token"], token["refresh_token"], refreshed["refresh_token"], secret)
    assert not any(str(s) in repr(e) for s in secrets for e in audit.events)


async def test_a_public_client_uses_pkce_without_a_secret(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers
) -> None:
    info, secret = await register(provider, public=True)
    assert secret is None
    code, verifier = await code_for(http, users, info.client_id)
    response = await exchange(http, info, None, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"


async def test_client_credentials_for_a_service(
    http: httpx.AsyncClient, provider: OidcProvider, audit: FakeAudit
) -> None:
    info, secret = await provider.register_client(
        ADMIN,
        "reports",
        name="Reports",
        public=False,
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["groups"],
        audience=["courtyard", "notes"],
    )
    assert secret is not None
    basic = base64.b64encode(f"{info.client_id}:{secret}".encode()).decode()
    response = await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body and "id_token" not in body
    claims = jwt.decode(body["access_token"], KeySet.import_key_set(provider.jwks())).claims
    assert claims["sub"] == f"svc:{info.client_id}" and claims["aud"] == ["courtyard", "notes"]
    assert claims["scope"] == "groups"
    refused = await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "openid"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert refused.json()["error"] == "invalid_scope"
    assert audit.events[-1].actor.id == f"svc:{info.client_id}"


# -- authorization endpoint attacks ----------------------------------------------------------------


async def test_an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers
) -> None:
    info, _ = await register(provider)
    _, challenge = pkce_pair()
    for uri in ("https://evil.example.com/callback", REDIRECT + "/", REDIRECT + "?x=1"):
        response = await authorize(
            http, info.client_id, users.sign_in(), challenge, redirect_uri=uri
        )
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "text/html" in response.headers["content-type"]
    unknown = await authorize(http, "cl_unknown", users.sign_in(), challenge)
    assert unknown.status_code == 400 and "location" not in unknown.headers


@pytest.mark.parametrize(
    ("extra", "challenge", "error"),
    [
        ({"code_challenge_method": "plain"}, "p" * 43, "invalid_request"),
        ({}, None, "invalid_request"),
        ({"response_type": "token"}, "c" * 43, "unsupported_response_type"),
        ({"scope": "openid admin"}, "c" * 43, "invalid_scope"),
        ({"scope": "openid groups"}, "c" * 43, "invalid_scope"),  # not registered for it
    ],
)
async def test_bad_requests_go_back_to_the_client_with_state(
    http: httpx.AsyncClient,
    provider: OidcProvider,
    users: FakeUsers,
    extra: dict[str, str],
    challenge: str | None,
    error: str,
) -> None:
    info, _ = await register(provider)
    response = await authorize(http, info.client_id, users.sign_in(), challenge, **extra)
    assert response.status_code == 302
    answer = query(response.headers["location"])
    assert answer["error"] == error and answer["state"] == "st-1" and "code" not in answer


async def test_prompt_none_without_a_session_is_login_required(
    http: httpx.AsyncClient, provider: OidcProvider
) -> None:
    info, _ = await register(provider)
    response = await authorize(http, info.client_id, None, "c" * 43, prompt="none")
    assert query(response.headers["location"])["error"] == "login_required"


# -- token endpoint attacks ----------------------------------------------------------------------


async def test_a_reused_code_is_refused_and_revokes_what_it_issued(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers, audit: FakeAudit
) -> None:
    info, secret = await register(provider)
    assert secret is not None
    revoked: list[str] = []
    provider.on_revoked(revoked.extend)
    code, verifier = await code_for(http, users, info.client_id)
    first = (await exchange(http, info, secret, code, verifier)).json()
    assert (await introspect(http, info, secret, first["access_token"]))["active"]
    again = await exchange(http, info, secret, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not (await introspect(http, info, secret, first["access_token"]))["active"]
    assert not (await introspect(http, info, secret, first["refresh_token"]))["active"]
    refresh = await http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(info.client_id, secret),
    )
    assert refresh.json()["error"] == "invalid_grant"
    assert len(revoked) == 1 and provider.revoked_jti() == revoked
    reuse = [e for e in audit.events if e.action == "auth.token.reuse"]
    assert [e.outcome for e in reuse] == ["denied"]


async def test_a_reused_refresh_token_revokes_the_whole_family(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers
) -> None:
    info, secret = await register(provider)
    assert secret is not None
    code, verifier = await code_for(http, users, info.client_id)
    first = (await exchange(http, info, secret, code, verifier)).json()

    async def use(token: str) -> httpx.Response:
        return await http.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(info.client_id, secret),
        )

    second = (await use(first["refresh_token"])).json()
    stolen = await use(first["refresh_token"])
    assert stolen.json()["error"] == "invalid_grant"
    for token in (second["refresh_token"], second["access_token"], first["access_token"]):
        assert not (await introspect(http, info, secret, token))["active"]
    assert (await use(second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_the_code_is_bound_to_verifier_redirect_client_and_time(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers, clock: FakeClock
) -> None:
    info, secret = await register(provider)
    other, other_secret = await register(provider)
    code, verifier = await code_for(http, users, info.client_id)
    wrong_verifier = await exchange(http, info, secret, code, pkce_pair()[0])
    assert wrong_verifier.json()["error"] == "invalid_grant"
    missing = await exchange(http, info, secret, code, "")
    assert missing.json()["error"] == "invalid_request"
    other_client = await exchange(http, other, other_secret, code, verifier)
    assert other_client.json()["error"] == "invalid_grant"
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": "https://app.example.com/other",
    }
    wrong_uri = await http.post("/oauth2/token", data=form, auth=(info.client_id, secret or ""))
    assert wrong_uri.json()["error"] == "invalid_grant"
    await clock.advance(61)
    expired = await exchange(http, info, secret, code, verifier)
    assert expired.json() == {"error": "invalid_grant", "error_description": "the code has expired"}


async def test_client_authentication_failures(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers
) -> None:
    info, secret = await register(provider)
    code, verifier = await code_for(http, users, info.client_id)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
    }
    basic = await http.post("/oauth2/token", data=form, auth=(info.client_id, "wrong"))
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    assert basic.headers["www-authenticate"].startswith("Basic")
    post = await http.post(
        "/oauth2/token", data={**form, "client_id": info.client_id, "client_secret": "wrong"}
    )
    assert post.status_code == 401 and post.json()["error"] == "invalid_client"
    none = await http.post("/oauth2/token", data={**form, "client_id": info.client_id})
    assert none.status_code == 401
    both = await http.post(
        "/oauth2/token",
        data={**form, "client_secret": secret or ""},
        auth=(info.client_id, secret or ""),
    )
    assert both.json()["error"] == "invalid_request"
    json_body = await http.post("/oauth2/token", json=form, auth=(info.client_id, secret or ""))
    assert json_body.json()["error"] == "invalid_request"
    unknown = await http.post(
        "/oauth2/token",
        data={**form, "grant_type": "password"},
        auth=(info.client_id, secret or ""),
    )
    assert unknown.json()["error"] == "unsupported_grant_type"
    not_allowed = await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(info.client_id, secret or ""),
    )
    assert not_allowed.json()["error"] == "unauthorized_client"
    # the code was never redeemed by those attempts
    assert (await exchange(http, info, secret, code, verifier)).status_code == 200


# -- revocation, userinfo, logout ----------------------------------------------------------------


async def test_revoking_an_access_token_feeds_the_gateways(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers, audit: FakeAudit
) -> None:
    info, secret = await register(provider)
    assert secret is not None
    code, verifier = await code_for(http, users, info.client_id)
    tokens = (await exchange(http, info, secret, code, verifier)).json()
    pushed: list[str] = []
    provider.on_revoked(pushed.extend)
    for token in (tokens["access_token"], "unknown-token"):
        response = await http.post(
            "/oauth2/revoke", data={"token": token}, auth=(info.client_id, secret)
        )
        assert response.status_code == 200
    assert pushed == provider.revoked_jti() and len(pushed) == 1
    me = await http.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 401 and 'error="invalid_token"' in me.headers["www-authenticate"]
    assert (await introspect(http, info, secret, tokens["refresh_token"]))["active"]
    await http.post(
        "/oauth2/revoke", data={"token": tokens["refresh_token"]}, auth=(info.client_id, secret)
    )
    assert not (await introspect(http, info, secret, tokens["refresh_token"]))["active"]
    assert audit.actions().count("auth.token.revoke") == 2
    anonymous = await http.post("/oauth2/revoke", data={"token": tokens["access_token"]})
    assert anonymous.status_code == 401


async def test_userinfo_needs_a_bearer_token(http: httpx.AsyncClient) -> None:
    bare = await http.get("/oauth2/userinfo")
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"


async def test_rp_initiated_logout(
    http: httpx.AsyncClient, provider: OidcProvider, users: FakeUsers
) -> None:
    info, secret = await register(provider)
    code, verifier = await code_for(http, users, info.client_id)
    id_token = (await exchange(http, info, secret, code, verifier)).json()["id_token"]
    cookie = users.sign_in()
    response = await http.get(
        "/oauth2/logout",
        params={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": LOGOUT_REDIRECT,
            "state": "bye-1",
        },
        headers={"Cookie": f"{COOKIE}={cookie}"},
    )
    assert response.status_code == 302
    assert response.headers["location"] == f"{LOGOUT_REDIRECT}?state=bye-1"
    assert cookie in users.logged_out
    assert f"{COOKIE}=" in response.headers["set-cookie"]
    evil = await http.get(
        "/oauth2/logout",
        params={"id_token_hint": id_token, "post_logout_redirect_uri": "https://evil.example/"},
    )
    assert evil.status_code == 400 and "location" not in evil.headers


async def test_logout_without_a_hint_asks_first(http: httpx.AsyncClient, users: FakeUsers) -> None:
    cookie = users.sign_in()
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    ask = await http.get("/oauth2/logout", headers=headers)
    assert ask.status_code == 200 and "confirm" in ask.text and cookie not in users.logged_out
    done = await http.post("/oauth2/logout", data={"confirm": "yes"}, headers=headers)
    assert done.status_code == 200 and cookie in users.logged_out
