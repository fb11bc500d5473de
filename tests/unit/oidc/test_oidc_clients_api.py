"""The admin API for OAuth clients and signing keys: platform admins only; secrets shown once."""

from __future__ import annotations

import httpx

from courtyard.iam._oidc import OidcProvider

from .conftest import REDIRECT, FakeAudit

ADMIN = {"X-Test-User": "admin"}
BODY = {
    "app": "notes",
    "name": "Notes",
    "public": False,
    "redirectUris": [REDIRECT],
    "postLogoutRedirectUris": [],
    "grantTypes": ["authorization_code", "refresh_token"],
    "scopes": ["openid", "email"],
    "audience": ["courtyard"],
}


async def test_only_admins_reach_the_api(http: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/api/v1/clients"), ("POST", "/api/v1/keys/rotate")):
        anonymous = await http.request(method, path)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        alice = await http.request(method, path, headers={"X-Test-User": "alice"})
        assert alice.status_code == 403


async def test_client_lifecycle(
    http: httpx.AsyncClient, provider: OidcProvider, audit: FakeAudit
) -> None:
    created = await http.post("/api/v1/clients", json=BODY, headers=ADMIN)
    assert created.status_code == 201, created.text
    document = created.json()
    client_id, secret = document["clientId"], document.pop("clientSecret")
    assert len(secret) >= 43 and document["scopes"] == ["openid", "email"]
    listed = (await http.get("/api/v1/clients", headers=ADMIN)).json()["clients"]
    assert listed == [document]
    shown = await http.get(f"/api/v1/clients/{client_id}", headers=ADMIN)
    assert shown.json() == document and secret not in shown.text
    rotated = await http.post(f"/api/v1/clients/{client_id}/secret", headers=ADMIN)
    new_secret = rotated.json()["clientSecret"]
    assert new_secret != secret
    old = await http.post("/oauth2/introspect", data={"token": "x"}, auth=(client_id, secret))
    assert old.status_code == 401
    fresh = await http.post("/oauth2/introspect", data={"token": "x"}, auth=(client_id, new_secret))
    assert fresh.json() == {"active": False}
    assert (await http.delete(f"/api/v1/clients/{client_id}", headers=ADMIN)).status_code == 204
    gone = await http.get(f"/api/v1/clients/{client_id}", headers=ADMIN)
    assert gone.status_code == 404
    assert audit.actions() == ["oidc.client.create", "oidc.client.secret", "oidc.client.delete"]
    assert audit.events[0].actor.id == "u_admin0000000000"
    assert not any(secret in repr(e) or new_secret in repr(e) for e in audit.events)


async def test_public_clients_get_no_secret(http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/clients", json={**BODY, "public": True}, headers=ADMIN)
    assert "clientSecret" not in created.json()
    rotate = await http.post(f"/api/v1/clients/{created.json()['clientId']}/secret", headers=ADMIN)
    assert rotate.status_code == 409


async def test_registrations_that_break_rules(http: httpx.AsyncClient) -> None:
    cases = [
        ({"redirectUris": ["http://app.example.com/cb"]}, "redirectUris"),  # http off loopback
        ({"redirectUris": ["https://app.example.com/cb#frag"]}, "redirectUris"),
        ({"redirectUris": []}, "redirectUris"),
        ({"grantTypes": ["implicit"]}, "grantTypes"),
        ({"public": True, "grantTypes": ["client_credentials"]}, "grantTypes"),
        ({"scopes": ["admin"]}, "scopes"),
        ({"audience": []}, "audience"),
        ({"app": "Not An App"}, "app"),
        ({"idTokenAlg": "HS256"}, "idTokenAlg"),
        ({"public": "yes"}, "public"),
        ({"scopes": "openid"}, "scopes"),
    ]
    for change, field in cases:
        response = await http.post("/api/v1/clients", json={**BODY, **change}, headers=ADMIN)
        assert response.status_code == 422, change
        assert response.json()["errors"][0]["field"] == field
    loopback = {**BODY, "redirectUris": ["http://127.0.0.1:8400/cb"]}
    assert (await http.post("/api/v1/clients", json=loopback, headers=ADMIN)).status_code == 201


async def test_keys_list_and_rotate(
    http: httpx.AsyncClient, provider: OidcProvider, audit: FakeAudit
) -> None:
    [key] = (await http.get("/api/v1/keys", headers=ADMIN)).json()["keys"]
    assert key["state"] == "active" and len(key["kids"]) == 2
    rotated = await http.post("/api/v1/keys/rotate", headers=ADMIN)
    assert rotated.status_code == 201 and rotated.json()["state"] == "next"
    assert rotated.json()["propagationDelay"] == 0
    published = {k["kid"] for k in (await http.get("/oauth2/jwks")).json()["keys"]}
    assert set(rotated.json()["kids"]) <= published
    assert await provider.advance_keys()
    states = [k["state"] for k in (await http.get("/api/v1/keys", headers=ADMIN)).json()["keys"]]
    assert states == ["retired", "active"]
    assert provider.gateway_auth()["signing_key"]["kid"] == rotated.json()["kids"][0]
    assert audit.actions() == ["keys.rotate", "keys.activate"]


async def test_gateway_auth_and_sweep(provider: OidcProvider) -> None:
    auth = provider.gateway_auth(cookie_name="__Host-courtyard_session", assertion_ttl=300)
    assert auth["issuer"] == "https://courtyard.test" and auth["assertion_ttl"] == 60
    assert auth["session_cookie"] == "__Host-courtyard_session" and auth["login_path"] == "/login"
    assert auth["signing_key"]["alg"] == "ES256" and "d" in auth["signing_key"]
    assert auth["signing_key"]["kid"] in {k["kid"] for k in auth["jwks"]["keys"]}
    assert all("d" not in k for k in auth["jwks"]["keys"])
    assert await provider.sweep() == 0
